// loadgen: what is sent and what must come back, whatever the protocol. A request is --size
// bytes whose first min(8, size) carry a tag of (connection, sequence number), so an echo of some
// other request is caught; a reply must be that echo or exactly "ACK: received N bytes".
// One per thread (the payload buffer is rewritten for every request).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "conn.hpp"

namespace loadgen {

class Requests {
public:
    explicit Requests(const Config &cfg);

    size_t size() const { return payload_.size(); }

    // The payload of request number `seq` on `c` (valid until the next call).
    const uint8_t *payload(const Conn &c, uint64_t seq);

    // Whether `p[0..n)` equals bytes [off, off+n) of the request in flight on `c`.
    bool echo_matches(const Conn &c, size_t off, const uint8_t *p, size_t n) const;

    // A whole reply message (seclink, cbc) to the request in flight: ends the run if wrong.
    void check_reply(const Conn &c, const uint8_t *data, size_t len) const;

    std::string expected_preview(const Conn &c) const;  // for error messages

private:
    void write_tag(uint32_t id, uint64_t seq, uint8_t *dst) const;

    const Config &cfg_;
    std::vector<uint8_t> payload_;  // its first bytes are rewritten per request
};

}  // namespace loadgen
