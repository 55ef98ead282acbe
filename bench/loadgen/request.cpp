// loadgen: request payloads and the reply checks (see request.hpp).
#include "request.hpp"

#include <algorithm>
#include <cstring>

#include "common.hpp"

namespace loadgen {

Requests::Requests(const Config &cfg) : cfg_(cfg), payload_(cfg.opt.size) {
    for (size_t i = 0; i < payload_.size(); ++i) payload_[i] = static_cast<uint8_t>('a' + (i * 7 + i / 251) % 26);
}

void Requests::write_tag(uint32_t id, uint64_t seq, uint8_t *dst) const {
    uint64_t tag = (static_cast<uint64_t>(id) << 40) ^ (seq * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < std::min<size_t>(8, size()); ++i, tag >>= 8) dst[i] = static_cast<uint8_t>(tag);
}

const uint8_t *Requests::payload(const Conn &c, uint64_t seq) {
    write_tag(c.id, seq, payload_.data());
    return payload_.data();
}

bool Requests::echo_matches(const Conn &c, size_t off, const uint8_t *p, size_t n) const {
    uint8_t head[8];
    write_tag(c.id, c.seq, head);
    const size_t tagged = std::min<size_t>(8, size());
    for (; n > 0 && off < tagged; ++p, ++off, --n)
        if (*p != head[off]) return false;
    return n == 0 || std::memcmp(p, payload_.data() + off, n) == 0;
}

void Requests::check_reply(const Conn &c, const uint8_t *data, size_t len) const {
    if (cfg_.opt.expect_echo) {
        if (len != size() || !echo_matches(c, 0, data, len))
            fatal("connection #%u: reply #%llu is not the echo of the request: %zu bytes \"%s\", expected %zu "
                  "bytes \"%s\"",
                  c.id, static_cast<unsigned long long>(c.seq), len, preview(data, len).c_str(), size(),
                  expected_preview(c).c_str());
    } else if (len != cfg_.ack.size() || std::memcmp(data, cfg_.ack.data(), len) != 0) {
        fatal("connection #%u: reply #%llu is \"%s\" (%zu bytes), expected \"%s\"%s", c.id,
              static_cast<unsigned long long>(c.seq), preview(data, len).c_str(), len, cfg_.ack.c_str(),
              len == size() ? " (an echo server? use --expect echo)" : "");
    }
}

std::string Requests::expected_preview(const Conn &c) const {
    std::vector<uint8_t> exp(std::min<size_t>(size(), 64));
    std::memcpy(exp.data(), payload_.data(), exp.size());
    write_tag(c.id, c.seq, exp.data());
    return preview(exp.data(), size() <= 48 ? size() : 49);
}

}  // namespace loadgen
