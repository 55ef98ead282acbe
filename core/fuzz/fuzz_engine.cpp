// libFuzzer target: arbitrary bytes into both sides of the engine, in every state.
//
// The first input byte picks a mode, the second a chunk size for feeding:
//   0  a fresh server (expects handshake frame 1)
//   1  a client that has sent frame 1 (expects frame 2)
//   2  an established server, raw transport bytes
//   3  an established client, raw transport bytes
//   4  an established server, the rest of the input cut into plaintexts that are encrypted
//      correctly, so the fuzzer reaches message parsing behind the tag check
//   5  the authenticity oracle: a stream of correctly encrypted frames (as in 4), then changed
//      by the fuzzer (bytes flipped, a byte range cut out, a frame replayed); the server must
//      deliver exactly the messages of the untouched stream's frames that precede the first
//      changed byte, each intact, and nothing of a changed frame
// Invariants checked: no crash or sanitizer report, consumed never exceeds the input, and once
// an error is reported every later call reports SL_ECLOSED.
#include <algorithm>
#include <array>
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

// Every message a connection delivered, with the input offset just past its frame.
struct Delivered {
    std::vector<std::vector<uint8_t>> content;
    std::vector<size_t> end;
};

// Feeds `in` in chunks until an error; records every message event.
void feed_recording(sl_conn *c, const uint8_t *in, size_t len, size_t chunk, Delivered *got) {
    size_t pos = 0;
    while (pos < len) {
        size_t n = len - pos < chunk ? len - pos : chunk, off = 0;
        while (off < n) {
            size_t used = 0;
            sl_event ev;
            int rc = sl_conn_feed(c, in + pos + off, n - off, &used, &ev);
            check(used <= n - off);
            if (rc != SL_OK) return;
            off += used;
            if (ev.type == SL_EVENT_MESSAGE) {
                got->content.emplace_back(1, static_cast<uint8_t>(ev.msg_type));  // type || content, as sealed
                got->content.back().insert(got->content.back().end(), ev.data, ev.data + ev.len);
                got->end.push_back(pos + off);
            }
        }
        pos += n;
    }
}

void drain(sl_conn *from, sl_conn *to) {
    const uint8_t *p = nullptr;
    size_t n = 0;
    sl_conn_pending(from, &p, &n);
    std::vector<uint8_t> copy(p, p + n);
    sl_conn_consume(from, n);
    feed(to, copy.data(), copy.size(), copy.size() + 1);
}

// A frame that is not the sender's, byte for byte, must never produce a message: the changed
// stream delivers a prefix of the untouched stream's messages, each ending where its frame ended,
// before the first changed byte.
void authenticity_oracle(sl_conn *server, const std::vector<uint8_t> &wire,
                         const std::vector<size_t> &ends, const std::vector<std::vector<uint8_t>> &sent,
                         const std::vector<std::array<uint8_t, 3>> &changes, size_t chunk) {
    std::vector<uint8_t> changed = wire;
    for (const auto &c : changes) {
        if (changed.empty()) break;
        const size_t at = ((size_t{c[0]} << 8) | c[1]) % changed.size();
        if (c[2] == 0) {
            changed.erase(changed.begin() + static_cast<std::ptrdiff_t>(at),
                          changed.begin() + static_cast<std::ptrdiff_t>(std::min(changed.size(), at + 8)));
        } else if (c[2] == 1) {
            size_t start = 0, end = 0;  // the last whole frame before `at`
            for (size_t i = 0; i < ends.size() && ends[i] <= at; ++i) start = end, end = ends[i];
            if (end > start) changed.insert(changed.begin() + static_cast<std::ptrdiff_t>(at), wire.begin() + static_cast<std::ptrdiff_t>(start),
                                            wire.begin() + static_cast<std::ptrdiff_t>(end));
        } else {
            changed[at] ^= c[2];
        }
    }
    size_t same = 0;  // length of the untouched prefix
    while (same < changed.size() && same < wire.size() && changed[same] == wire[same]) ++same;

    Delivered got;
    feed_recording(server, changed.data(), changed.size(), chunk, &got);
    check(got.content.size() <= sent.size());
    for (size_t i = 0; i < got.content.size(); ++i) {
        check(got.end[i] == ends[i]);       // message i came from frame i...
        check(ends[i] <= same);             // ...which no change touched...
        check(got.content[i] == sent[i]);   // ...and is what was sent
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const int mode = data[0] % 6;
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
        // the input holds: [len byte][plaintext]... (mode 5: after the changes to make, below)
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
        // Mode 5: [count][count x (offset hi, offset lo, operation)] first. Operation 0 cuts
        // `offset`..+8 out, 1 replays the frame that ends last before `offset` there, and
        // anything else flips the byte at `offset` by that value.
        std::vector<std::array<uint8_t, 3>> changes;
        size_t first = 0;
        if (mode == 5 && size > 0) {
            const size_t count = std::min<size_t>(data[0] % 8, (size - 1) / 3);
            for (size_t i = 0; i < count; ++i) changes.push_back({data[1 + 3 * i], data[2 + 3 * i], data[3 + 3 * i]});
            first = 1 + 3 * count;
        }
        std::vector<uint8_t> wire;
        std::vector<size_t> ends;        // where each frame ends in `wire`
        std::vector<std::vector<uint8_t>> sent;
        uint64_t counter = 0;
        for (size_t pos = first; pos < size;) {
            size_t pt_len = data[pos++];
            if (pt_len > size - pos) pt_len = size - pos;
            size_t at = wire.size(), body = 12 + pt_len + 16;
            wire.resize(at + 4 + body);
            uint8_t *f = wire.data() + at;
            f[0] = 0, f[1] = 0, f[2] = static_cast<uint8_t>(body >> 8), f[3] = static_cast<uint8_t>(body);
            d::make_nonce(counter++, f + 4);
            check(aead.seal(f + 4, nullptr, 0, data + pos, pt_len, nullptr, 0, f + 16, f + 16 + pt_len) == SL_OK);
            if (mode == 5) {
                ends.push_back(wire.size());
                sent.emplace_back(data + pos, data + pos + pt_len);
            }
            pos += pt_len;
        }
        if (mode != 5) {
            feed(server, wire.data(), wire.size(), chunk);
        } else {
            authenticity_oracle(server, wire, ends, sent, changes, chunk);
        }
    }
    sl_conn_free(client);
    sl_conn_free(server);
    return 0;
}
