// loadgen: the protocol clients behind one interface. A Protocol turns requests into bytes to
// write and the bytes read back into verified replies, for the connections of one thread:
//   seclink, seclink-tls   the seclink/1 engine through the public C ABI (protocol_seclink.cpp)
//   raw, tls-raw, cbc      u32be length-prefixed frames (protocol_framed.cpp)
// (The TLS of seclink-tls and tls-raw is the byte stream below, stream.hpp.) It reports back to
// its driver through Events; everything about modes and timing is the driver's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "conn.hpp"
#include "request.hpp"

namespace loadgen {

// What a protocol tells the driver (the Worker).
class Events {
public:
    virtual void established(Conn &c) = 0;  // the session is usable
    virtual void reply_ok(Conn &c) = 0;     // the reply to the request in flight is verified
protected:
    ~Events() = default;
};

class Protocol {
public:
    Protocol(const Config &cfg, Requests &req, Events &ev) : cfg_(cfg), req_(req), ev_(ev) {}
    virtual ~Protocol() = default;
    Protocol(const Protocol &) = delete;
    Protocol &operator=(const Protocol &) = delete;

    // The byte stream is up (TCP, or TLS done): start a handshake, or report `established`.
    virtual void start(Conn &c) = 0;
    // Queues request number c.seq (its payload: `req.payload(c, c.seq)`).
    virtual void queue_request(Conn &c) = 0;
    // rr: whether the next request can be prepared while this one is in flight (then the driver
    // writes the current one first and calls prepare_next).
    virtual bool prepares_ahead() const { return false; }
    virtual void prepare_next(Conn &) {}
    // Queues a goodbye, if the protocol has one: returns whether anything was queued. When
    // best_effort is false a failure ends the run.
    virtual bool queue_close(Conn &, bool /*best_effort*/) { return false; }
    // The bytes waiting to be written, and that n of them were written.
    virtual void pending(const Conn &c, const uint8_t **p, size_t *n) const = 0;
    virtual void consume(Conn &c, size_t n) = 0;
    // Bytes read from the server.
    virtual void on_bytes(Conn &c, const uint8_t *p, size_t n) = 0;
    // The server closed the stream: what to add to "the server closed the connection", and a hint.
    virtual std::string eof_detail(Conn &) { return ""; }
    virtual const char *eof_hint(const Conn &c) const;
    // The socket is being closed: free the per-connection state.
    virtual void release(Conn &) {}

protected:
    // A whole reply message (seclink, cbc): check it, then report it.
    void deliver_reply(Conn &c, const uint8_t *data, size_t len);

    const Config &cfg_;
    Requests &req_;
    Events &ev_;
};

std::unique_ptr<Protocol> make_protocol(const Config &cfg, Requests &req, Events &ev);

}  // namespace loadgen
