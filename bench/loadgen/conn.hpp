// loadgen: the data every part shares. Config (read-only, built once in main: options, server
// address, keys, TLS context), Shared (the main thread's signals to the event-loop threads), and
// Conn, one connection's state: its socket, its place in the state machine, its TLS layer and
// the per-protocol fields.
#pragma once

#include <netinet/in.h>
#include <openssl/ssl.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "options.hpp"
#include "seclink/seclink.h"

namespace loadgen {

struct Config {
    Options opt;
    sockaddr_in addr{};
    uint8_t psk[SL_KEY_BYTES]{};
    uint8_t cbc_enc[32]{}, cbc_mac[32]{};
    SSL_CTX *tls = nullptr;
    bool host_is_ip = false;
    std::string ack;  // "ACK: received N bytes"
};

struct Shared {
    std::atomic<unsigned> ready{0};      // threads whose connections are all set up
    std::atomic<bool> go{false};         // main: start the measured run (t0, t1 are set)
    std::atomic<bool> release{false};    // main: idle mode, close the held sessions
    std::atomic<uint64_t> t0{0}, t1{0};  // the measured window
    uint64_t setup_deadline = 0;
};

// Free -> Connecting -> [TlsHandshake] -> [Handshake (seclink)] -> Ready <-> Waiting
//      -> (sessions mode) Closing -> Free
enum class St : uint8_t { Free, Connecting, TlsHandshake, Handshake, Ready, Waiting, Closing };

const char *st_name(St s);

struct Conn {
    uint32_t id = 0;          // global number: in error messages and in each request's first bytes
    uint32_t gen = 0;         // bumped whenever the slot gets a new socket (sessions mode)
    int fd = -1;
    St st = St::Free;
    bool out_armed = false;       // EPOLLOUT is in the interest set
    bool tls_wants_write = false; // the last SSL call needs the socket to become writable
    SSL *ssl = nullptr;
    uint64_t seq = 0;             // requests sent on this socket
    uint64_t t_send = 0;          // when the request in flight was queued
    uint64_t t_open = 0;          // when the socket was opened (a session's start)
    // seclink, seclink-tls
    sl_conn *sl = nullptr;
    size_t held = 0;              // rr: the next request, sealed ahead, at the end of the engine's
                                  // output; not written until its turn
    // raw, tls-raw, cbc
    std::vector<uint8_t> out;     // the frame being written is out[out_off, out_len)
    size_t out_off = 0, out_len = 0;
    bool cbc_sealed = false;      // cbc, ack mode: `out` holds this connection's sealed request
    uint8_t hdr[4]{};             // the reply's length prefix, as received so far
    uint32_t hdr_got = 0, body_len = 0;
    size_t body_got = 0;
    std::vector<uint8_t> body;    // cbc: the reply body (verified as a whole)
};

}  // namespace loadgen
