// loadgen: the seclink and seclink-tls client: the seclink/1 engine (Noise NNpsk0 handshake,
// then DATA) through the public C ABI seclink/seclink.h only. In rr mode the next request is
// sealed while the current one is in flight (prepare_next), and held back until its turn.
#include <memory>
#include <string>

#include "common.hpp"
#include "protocol.hpp"

namespace loadgen {

namespace {

class SeclinkProtocol final : public Protocol {
public:
    using Protocol::Protocol;

    void start(Conn &c) override {
        int rc = sl_conn_new(&c.sl, SL_CLIENT, cfg_.psk);
        if (rc == SL_OK) rc = sl_conn_start(c.sl);
        if (rc != SL_OK) fatal("connection #%u: cannot start the seclink engine: %s", c.id, sl_strerror(rc));
        c.st = St::Handshake;
    }

    void queue_request(Conn &c) override {
        const uint8_t *payload = req_.payload(c, c.seq);
        if (c.held != 0) {
            c.held = 0;  // sealed ahead while the previous request was in flight: release it
            return;
        }
        const int rc = sl_conn_send(c.sl, SL_MSG_DATA, payload, req_.size());
        if (rc != SL_OK) fatal("connection #%u: sending a %zu-byte message failed: %s", c.id, req_.size(), sl_strerror(rc));
    }

    // Still one request in flight, but the loadgen's own encryption is not part of the round
    // trip (the baselines' loadgen paths spend no crypto per request either).
    bool prepares_ahead() const override { return true; }
    void prepare_next(Conn &c) override {
        const size_t before = sl_conn_pending_size(c.sl);
        const int rc = sl_conn_send(c.sl, SL_MSG_DATA, req_.payload(c, c.seq + 1), req_.size());
        if (rc != SL_OK) fatal("connection #%u: sealing the next request failed: %s", c.id, sl_strerror(rc));
        c.held = sl_conn_pending_size(c.sl) - before;
    }

    bool queue_close(Conn &c, bool best_effort) override {
        c.held = 0;  // a request sealed ahead goes out before the CLOSE; its reply is not read
        if (best_effort && (!c.sl || !sl_conn_is_established(c.sl) || sl_conn_is_closed(c.sl))) return false;
        const int rc = sl_conn_send(c.sl, SL_MSG_CLOSE, nullptr, 0);
        if (rc != SL_OK && !best_effort) fatal("connection #%u: cannot queue CLOSE: %s", c.id, sl_strerror(rc));
        return rc == SL_OK;
    }

    void pending(const Conn &c, const uint8_t **p, size_t *n) const override {
        *p = nullptr;
        *n = 0;
        if (!c.sl) return;
        sl_conn_pending(c.sl, p, n);
        *n -= c.held;  // the request sealed ahead waits for its turn
    }

    void consume(Conn &c, size_t n) override { sl_conn_consume(c.sl, n); }

    void on_bytes(Conn &c, const uint8_t *p, size_t n) override {
        const uint32_t gen = c.gen;
        size_t off = 0;
        for (size_t calls = 0; off < n; ++calls) {  // each call consumes bytes or yields an event
            if (calls > n + 16) fatal("connection #%u: the engine made no progress on its input", c.id);
            size_t used = 0;
            sl_event ev{};
            const int rc = sl_conn_feed(c.sl, p + off, n - off, &used, &ev);
            if (rc != SL_OK)
                fatal("connection #%u: seclink protocol error %s (%s): %s", c.id, sl_errname(rc), st_name(c.st),
                      sl_strerror(rc));
            off += used;
            if (ev.type == SL_EVENT_HANDSHAKE_DONE) {
                ev_.established(c);
            } else if (ev.type == SL_EVENT_MESSAGE) {
                if (ev.msg_type == SL_MSG_DATA) {
                    deliver_reply(c, ev.data, ev.len);
                } else if (ev.msg_type == SL_MSG_CLOSE) {
                    fatal("connection #%u: the server sent CLOSE \"%s\" (%s, %llu requests sent)", c.id,
                          preview(ev.data, ev.len).c_str(), st_name(c.st), static_cast<unsigned long long>(c.seq));
                }  // PING: the engine has queued the PONG; PONG: not asked for, ignored
            } else if (used == 0) {
                fatal("connection #%u: the engine consumed no input", c.id);
            }
            if (c.gen != gen || c.st == St::Closing) return;  // the session ended on this event
        }
    }

    std::string eof_detail(Conn &c) override {
        const int rc = c.sl ? sl_conn_feed_eof(c.sl) : SL_OK;
        return rc == SL_OK ? "" : std::string(" in the middle of a frame (") + sl_errname(rc) + ")";
    }

    const char *eof_hint(const Conn &c) const override {
        if (c.st == St::Handshake) return "; a seclink server closes silently when the handshake fails: same --psk-file?";
        return Protocol::eof_hint(c);
    }

    void release(Conn &c) override {
        sl_conn_free(c.sl);
        c.sl = nullptr;
    }
};

}  // namespace

std::unique_ptr<Protocol> make_seclink_protocol(const Config &cfg, Requests &req, Events &ev) {
    return std::make_unique<SeclinkProtocol>(cfg, req, ev);
}

}  // namespace loadgen
