// libFuzzer target: arbitrary bytes into both sides of the engine, in every state.
//
// The first input byte picks a mode, the second a chunk size for feeding:
//   0  a fresh server (expects handshake frame 1)
//   1  a client that has sent frame 1 (expects frame 2)
//   2  an established server, raw transport bytes
//   3  an established client, raw transport bytes
//   4  an established server, the rest of the input cut into plaintexts that are encrypted
//      correctly, so the fuzzer reaches message parsing behind the tag check
// Invariants checked: no crash or sanitizer report, consumed never exceeds the input, and once
// an error is reported every later call reports SL_ECLOSED.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine.hpp"
#include "noise.hpp"
#include "seclink/seclink.h"

namespace d = seclink::detail;

namespace {

const uint8_t kPsk[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                          17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
const uint8_t kClientE[32] = {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                              0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                              0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11};
const uint8_t kServerE[32] = {0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
                              0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
                              0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22};

void check(bool ok) {
    if (!ok) std::abort();
}

// Feeds `in` in chunks; returns false once the connection reported an error.
bool feed(sl_conn *c, const uint8_t *in, size_t len, size_t chunk) {
    size_t pos = 0;
    while (pos < len) {
        size_t n = len - pos < chunk ? len - pos : chunk, off = 0;
        while (off < n) {
            size_t used = 0;
            sl_event ev;
            int rc = sl_conn_feed(c, in + pos + off, n - off, &used, &ev);
            check(used <= n - off);
            if (rc != SL_OK) {
                check(sl_conn_feed(c, in, len, &used, &ev) == SL_ECLOSED);
                check(sl_conn_is_closed(c) == 1);
                return false;
            }
            if (ev.type == SL_EVENT_MESSAGE) check(ev.len == 0 || ev.data != nullptr);
            if (ev.type == SL_EVENT_MESSAGE && ev.msg_type == SL_MSG_DATA && !sl_conn_is_closed(c))
                check(sl_conn_send(c, SL_MSG_DATA, ev.data, ev.len) == SL_OK);  // echo, as a server would
            off += used;
        }
        pos += n;
    }
    sl_conn_feed_eof(c);
    return true;
}

void drain(sl_conn *from, sl_conn *to) {
    const uint8_t *p = nullptr;
    size_t n = 0;
    sl_conn_pending(from, &p, &n);
    std::vector<uint8_t> copy(p, p + n);
    sl_conn_consume(from, n);
    feed(to, copy.data(), copy.size(), copy.size() + 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const int mode = data[0] % 5;
    const size_t chunk = data[1] == 0 ? size : data[1];
    data += 2;
    size -= 2;

    sl_conn *client = nullptr, *server = nullptr;
    check(sl_conn_new(&client, SL_CLIENT, kPsk) == SL_OK);
    check(sl_conn_new(&server, SL_SERVER, kPsk) == SL_OK);
    sl_conn_set_ephemeral_for_testing(client, kClientE);
    sl_conn_set_ephemeral_for_testing(server, kServerE);
    sl_conn_set_max_message(server, 4096);
    sl_conn_set_max_message(client, 4096);
    check(sl_conn_start(client) == SL_OK && sl_conn_start(server) == SL_OK);

    if (mode == 0) {
        feed(server, data, size, chunk);
    } else if (mode == 1) {
        feed(client, data, size, chunk);
    } else if (mode <= 3) {
        drain(client, server);
        drain(server, client);
        check(sl_conn_is_established(client) && sl_conn_is_established(server));
        feed(mode == 2 ? server : client, data, size, chunk);
    } else {
        // A hand-driven client (the Noise layer directly) that encrypts whatever plaintexts
        // the input holds: [len byte][plaintext]...
        d::Handshake hs;
        uint8_t msg[64], payload[64], k1[32], k2[32], h[32];
        size_t len = 0;
        check(hs.init(true, d::kPrologue, sizeof d::kPrologue, kPsk) == SL_OK);
        check(hs.set_ephemeral(kClientE) == SL_OK);
        check(hs.write_message(nullptr, 0, msg, &len) == SL_OK);
        std::vector<uint8_t> f1 = {0, 0, 0, static_cast<uint8_t>(5 + len), 'S', 'L', 'N', 'K', 1};
        f1.insert(f1.end(), msg, msg + len);
        feed(server, f1.data(), f1.size(), f1.size());
        const uint8_t *p = nullptr;
        size_t n = 0;
        sl_conn_pending(server, &p, &n);
        check(n == 52 && hs.read_message(p + 4, n - 4, payload, &len) == SL_OK);
        sl_conn_consume(server, n);
        check(hs.split(k1, k2, h) == SL_OK);
        d::Aead aead;
        check(aead.init(k1, true) == SL_OK);
        std::vector<uint8_t> wire;
        uint64_t counter = 0;
        for (size_t pos = 0; pos < size;) {
            size_t pt_len = data[pos++];
            if (pt_len > size - pos) pt_len = size - pos;
            size_t at = wire.size(), body = 12 + pt_len + 16;
            wire.resize(at + 4 + body);
            uint8_t *f = wire.data() + at;
            f[0] = 0, f[1] = 0, f[2] = static_cast<uint8_t>(body >> 8), f[3] = static_cast<uint8_t>(body);
            d::make_nonce(counter++, f + 4);
            check(aead.seal(f + 4, nullptr, 0, data + pos, pt_len, nullptr, 0, f + 16, f + 16 + pt_len) == SL_OK);
            pos += pt_len;
        }
        feed(server, wire.data(), wire.size(), chunk);
    }
    sl_conn_free(client);
    sl_conn_free(server);
    return 0;
}
