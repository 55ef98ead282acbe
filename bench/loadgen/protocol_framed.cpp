// loadgen: the clients of the baselines, which all frame a message as u32be(N) || N bytes:
//   raw, tls-raw   the request as it is; the reply must be the same frame (checked as it streams in)
//   cbc            baseline (b)'s AES-256-CBC + HMAC-SHA-256 frame (cbc.hpp); the reply body is
//                  verified as a whole, then checked like a seclink reply
// FramedProtocol holds what they share: the output buffer and the reading of length prefixes.
#include <algorithm>
#include <cstring>
#include <memory>

#include "cbc.hpp"
#include "common.hpp"
#include "protocol.hpp"

namespace loadgen {

namespace {

class FramedProtocol : public Protocol {
public:
    using Protocol::Protocol;

    void start(Conn &c) override { ev_.established(c); }  // no handshake

    void queue_request(Conn &c) override {
        fill_frame(c, req_.payload(c, c.seq));
        c.out_off = 0;
        c.out_len = c.out.size();
    }

    void pending(const Conn &c, const uint8_t **p, size_t *n) const override {
        *p = c.out.data() + c.out_off;
        *n = c.out_len - c.out_off;
    }

    void consume(Conn &c, size_t n) override {
        c.out_off += n;
        if (c.out_off == c.out_len) c.out_off = c.out_len = 0;  // the buffer is kept for the next request
    }

    void on_bytes(Conn &c, const uint8_t *p, size_t n) override {
        const uint32_t gen = c.gen;
        size_t off = 0;
        while (off < n) {
            if (c.st != St::Waiting)
                fatal("connection #%u: %zu unexpected bytes from the server (%s)", c.id, n - off, st_name(c.st));
            if (c.hdr_got < 4) {
                const size_t k = std::min<size_t>(4 - c.hdr_got, n - off);
                std::memcpy(c.hdr + c.hdr_got, p + off, k);
                c.hdr_got += static_cast<uint32_t>(k);
                off += k;
                if (c.hdr_got < 4) return;
                c.body_len = get_be32(c.hdr);
                c.body_got = 0;
                body_begins(c);
            }
            const size_t k = std::min<size_t>(c.body_len - c.body_got, n - off);
            body_bytes(c, p + off, k);
            c.body_got += k;
            off += k;
            if (c.body_got < c.body_len) return;
            c.hdr_got = 0;
            body_done(c);
            if (c.gen != gen || c.st == St::Closing) return;
        }
    }

protected:
    // c.out = the whole frame (length prefix included) carrying the payload of request c.seq.
    virtual void fill_frame(Conn &c, const uint8_t *payload) = 0;
    // The reply's length (c.body_len) is known; bytes [c.body_got, +n) of its body; all of it.
    virtual void body_begins(Conn &c) = 0;
    virtual void body_bytes(Conn &c, const uint8_t *p, size_t n) = 0;
    virtual void body_done(Conn &c) = 0;
};

class RawProtocol final : public FramedProtocol {
public:
    using FramedProtocol::FramedProtocol;

private:
    void fill_frame(Conn &c, const uint8_t *payload) override {
        const size_t n = req_.size();
        c.out.resize(4 + n);
        put_be32(c.out.data(), static_cast<uint32_t>(n));
        std::memcpy(c.out.data() + 4, payload, n);
    }

    void body_begins(Conn &c) override {
        if (c.body_len != req_.size())
            fatal("connection #%u: reply #%llu announces %u bytes, expected the echo of %zu", c.id,
                  static_cast<unsigned long long>(c.seq), c.body_len, req_.size());
    }

    void body_bytes(Conn &c, const uint8_t *p, size_t n) override {
        if (!req_.echo_matches(c, c.body_got, p, n))
            fatal("connection #%u: reply #%llu is not the echo of the request (bytes %zu..%zu differ; "
                  "expected \"%s\")",
                  c.id, static_cast<unsigned long long>(c.seq), c.body_got, c.body_got + n,
                  req_.expected_preview(c).c_str());
    }

    void body_done(Conn &c) override { ev_.reply_ok(c); }
};

class CbcProtocol final : public FramedProtocol {
public:
    CbcProtocol(const Config &cfg, Requests &req, Events &ev)
        : FramedProtocol(cfg, req, ev), cipher_(cfg.cbc_enc, cfg.cbc_mac),
          // The longest acceptable reply: the echo, or the ACK text.
          max_body_(cbc_body_len(cfg.opt.expect_echo ? cfg.opt.size : cfg.ack.size())), plain_(max_body_) {}

    const char *eof_hint(const Conn &c) const override {
        return c.seq == 1 ? "; the cbc server drops frames whose HMAC fails: same --psk-file?" : "";
    }

private:
    void fill_frame(Conn &c, const uint8_t *payload) override {
        // The cbc protocol has no counter: the server cannot tell a resent frame from a new
        // one and does the same work for it. With ACK replies (the request's bytes are not
        // checked) each connection seals its request once and resends it, so the loadgen's
        // CPU, shared with the server on a small machine, does not hold the baseline back.
        if (c.cbc_sealed && !cfg_.opt.cbc_reseal) return;
        cipher_.seal(payload, req_.size(), c.out);
        c.cbc_sealed = !cfg_.opt.expect_echo;  // --cbc-reseal: a fresh IV and MAC every time
    }

    void body_begins(Conn &c) override {
        if (c.body_len < cbc_body_len(0) || c.body_len > max_body_)
            fatal("connection #%u: reply #%llu announces a %u-byte frame body, expected %zu to %zu", c.id,
                  static_cast<unsigned long long>(c.seq), c.body_len, cbc_body_len(0), max_body_);
        c.body.resize(c.body_len);
    }

    void body_bytes(Conn &c, const uint8_t *p, size_t n) override { std::memcpy(c.body.data() + c.body_got, p, n); }

    void body_done(Conn &c) override {
        const size_t m = cipher_.open(c.body.data(), c.body_len, plain_.data());
        if (m == SIZE_MAX)
            fatal("connection #%u: reply #%llu failed HMAC or padding verification (different PSK?)", c.id,
                  static_cast<unsigned long long>(c.seq));
        deliver_reply(c, plain_.data(), m);
    }

    CbcCipher cipher_;
    size_t max_body_;
    std::vector<uint8_t> plain_;  // the decrypted reply
};

}  // namespace

std::unique_ptr<Protocol> make_raw_protocol(const Config &cfg, Requests &req, Events &ev) {
    return std::make_unique<RawProtocol>(cfg, req, ev);
}

std::unique_ptr<Protocol> make_cbc_protocol(const Config &cfg, Requests &req, Events &ev) {
    return std::make_unique<CbcProtocol>(cfg, req, ev);
}

}  // namespace loadgen
