// loadgen: one thread's event loop and its connections' state machine. Non-blocking sockets
// with TCP_NODELAY, level-triggered epoll with EPOLLOUT armed only while output is blocked.
// It opens and closes connections, drives each through connect -> (TLS handshake ->) protocol
// start, writes what the protocol has pending and feeds it what arrives. Connections in state
// Closing are handed back to the driver (Driver::closing_flushed) once all is written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "conn.hpp"
#include "protocol.hpp"

namespace loadgen {

class Loop {
public:
    class Driver {
    public:
        virtual void closing_flushed(Conn &c) = 0;  // a Closing connection wrote its last byte
    protected:
        ~Driver() = default;
    };

    // This thread (`index`) of opt.threads gets connections index, index + threads, ...
    Loop(const Config &cfg, Protocol &proto, Driver &driver, unsigned index, size_t nconns);
    ~Loop();
    Loop(const Loop &) = delete;
    Loop &operator=(const Loop &) = delete;

    std::vector<Conn> &conns() { return conns_; }

    void open(Conn &c);   // starts a non-blocking connect
    void close(Conn &c);  // frees everything; the slot can be opened again
    // Waits up to timeout_ms for events and handles them.
    void poll(int timeout_ms);
    // Drives one connection as far as it goes without blocking.
    void pump(Conn &c);
    // Writes pending output until the socket would block; returns whether anything was written.
    bool flush(Conn &c, bool fail_on_error = true);

private:
    uint64_t key(const Conn &c) const;
    [[noreturn]] void connect_failed(const Conn &c, int err);
    void connected(Conn &c);
    bool read_some(Conn &c);
    [[noreturn]] void on_eof(Conn &c);
    void arm(Conn &c);
    size_t pending_size(const Conn &c) const;

    const Config &cfg_;
    Protocol &proto_;
    Driver &driver_;
    int ep_ = -1;
    std::vector<Conn> conns_;
    std::vector<uint8_t> rbuf_;   // one read buffer per thread
    std::vector<uint64_t> again_; // keys of connections whose TLS layer holds decrypted bytes
};

}  // namespace loadgen
