// loadgen: small helpers every part uses: the monotonic clock, the fatal error exit, OpenSSL's
// error queue as text, big-endian 32-bit integers and printable previews of replies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace loadgen {

uint64_t now_ns();  // CLOCK_MONOTONIC
uint64_t seconds_to_ns(double s);
void sleep_until_ns(uint64_t t);

// Prints "loadgen: error: ..." and ends the process at once (from any thread: a failed check must
// stop every connection, and no thread may keep running while static objects are destroyed).
[[noreturn]] __attribute__((format(printf, 1, 2))) void fatal(const char *fmt, ...);

std::string openssl_errors();  // drains (at most 8 entries of) the thread's OpenSSL error queue

void put_be32(uint8_t *p, uint32_t v);
uint32_t get_be32(const uint8_t *p);

std::string preview(const uint8_t *p, size_t n);  // printable, at most 48 bytes, for error messages

}  // namespace loadgen
