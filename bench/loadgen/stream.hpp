// loadgen: the byte stream under a protocol, plain TCP or TLS 1.3 (seclink-tls, tls-raw):
// attaching TLS to a connected socket (certificate checked against --tls-ca and --host), the
// TLS handshake, and non-blocking read/write that hide which of the two it is.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "conn.hpp"

namespace loadgen {

// The socket is connected: with TLS, attach an SSL object (state TlsHandshake) and return true.
bool tls_attach(const Config &cfg, Conn &c);

// Advances the TLS handshake; true once it is complete.
bool tls_handshake(const Config &cfg, Conn &c);

// Writes some of p[0..n): bytes written (> 0), 0 if the stream cannot take more now (or failed,
// with fail_on_error false), -1 if interrupted (try again).
ssize_t stream_write(const Config &cfg, Conn &c, const uint8_t *p, size_t n, bool fail_on_error);

// Reads once: bytes read (> 0), 0 if nothing now, kStreamEof if the server closed the stream.
constexpr ssize_t kStreamEof = -1;
ssize_t stream_read(const Config &cfg, Conn &c, uint8_t *buf, size_t n);

// Decrypted bytes wait in the TLS layer (no epoll event will announce them).
inline bool stream_buffered(const Conn &c) { return c.ssl && SSL_pending(c.ssl) > 0; }

// Sends close_notify if the handshake was done (no wait) and frees the TLS layer.
void tls_close(Conn &c);

}  // namespace loadgen
