// test_util.hpp - helpers shared by the GoogleTest files: hex, JSON vectors, and a pair of
// in-memory connections wired back to back.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "seclink/seclink.h"

namespace sltest {

using Bytes = std::vector<uint8_t>;

inline Bytes unhex(const std::string &s) {
    Bytes out;
    for (size_t i = 0; i + 1 < s.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(s.substr(i, 2), nullptr, 16)));
    return out;
}

inline std::string hex(const uint8_t *p, size_t n) {
    static const char *d = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; ++i) {
        s += d[p[i] >> 4];
        s += d[p[i] & 15];
    }
    return s;
}
inline std::string hex(const Bytes &b) { return hex(b.data(), b.size()); }

inline Bytes bytes(const std::string &s) { return Bytes(s.begin(), s.end()); }

// A vector file: tests/vectors/public/NAME (public, vendored) or tests/vectors/NAME (project).
inline nlohmann::json load_json(const std::string &path) {
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open test vector file " + path);
    return nlohmann::json::parse(f);
}
inline nlohmann::json public_vectors(const std::string &name) {
    return load_json(std::string(SECLINK_PUBLIC_VECTORS_DIR) + "/" + name);
}
inline nlohmann::json project_vectors(const std::string &name) {
    return load_json(std::string(SECLINK_PROJECT_VECTORS_DIR) + "/" + name);
}

inline std::array<uint8_t, 32> key_of(uint8_t fill) {
    std::array<uint8_t, 32> k{};
    k.fill(fill);
    return k;
}

// What one feed() of a whole buffer produced.
struct Msg {
    int type;
    Bytes content;
};
struct FeedResult {
    int rc = SL_OK;
    bool handshake_done = false;
    std::vector<Msg> msgs;
};

// Feeds all of `in` to `c`, `chunk` bytes at a time (0 = all at once), collecting events.
inline FeedResult feed_all(sl_conn *c, const Bytes &in, size_t chunk = 0) {
    FeedResult r;
    size_t pos = 0;
    while (pos < in.size()) {
        size_t n = chunk == 0 ? in.size() - pos : std::min(chunk, in.size() - pos);
        size_t off = 0;
        while (off < n) {
            size_t used = 0;
            sl_event ev{};
            r.rc = sl_conn_feed(c, in.data() + pos + off, n - off, &used, &ev);
            if (r.rc != SL_OK) return r;
            off += used;
            if (ev.type == SL_EVENT_HANDSHAKE_DONE) r.handshake_done = true;
            if (ev.type == SL_EVENT_MESSAGE) r.msgs.push_back({ev.msg_type, Bytes(ev.data, ev.data + ev.len)});
        }
        pos += n;
    }
    return r;
}

// Takes (and consumes) everything `c` has queued for sending.
inline Bytes take_output(sl_conn *c) {
    const uint8_t *p = nullptr;
    size_t n = 0;
    EXPECT_EQ(sl_conn_pending(c, &p, &n), SL_OK);
    Bytes out(p, p + n);
    EXPECT_EQ(sl_conn_consume(c, n), SL_OK);
    return out;
}

// A client and a server connected back to back in memory.
struct Pair {
    sl_conn *client = nullptr;
    sl_conn *server = nullptr;

    Pair(const std::array<uint8_t, 32> &client_psk, const std::array<uint8_t, 32> &server_psk) {
        EXPECT_EQ(sl_conn_new(&client, SL_CLIENT, client_psk.data()), SL_OK);
        EXPECT_EQ(sl_conn_new(&server, SL_SERVER, server_psk.data()), SL_OK);
    }
    explicit Pair(const std::array<uint8_t, 32> &psk = key_of(7)) : Pair(psk, psk) {}
    ~Pair() {
        sl_conn_free(client);
        sl_conn_free(server);
    }
    Pair(const Pair &) = delete;
    Pair &operator=(const Pair &) = delete;

    void start() {
        ASSERT_EQ(sl_conn_start(client), SL_OK);
        ASSERT_EQ(sl_conn_start(server), SL_OK);
    }
    // Runs the handshake to completion and checks both sides agree.
    void handshake() {
        start();
        FeedResult s = feed_all(server, take_output(client));
        ASSERT_EQ(s.rc, SL_OK);
        ASSERT_TRUE(s.handshake_done);
        FeedResult c = feed_all(client, take_output(server));
        ASSERT_EQ(c.rc, SL_OK);
        ASSERT_TRUE(c.handshake_done);
        confirm();
    }
    // Key confirmation (PROTOCOL.md 4.1): the client's empty PING, the server's PONG, which the
    // client swallows. Afterwards both counters stand at 1.
    void confirm() {
        ASSERT_FALSE(sl_conn_peer_confirmed(server));
        FeedResult s = feed_all(server, take_output(client));
        ASSERT_EQ(s.rc, SL_OK);
        ASSERT_EQ(s.msgs.size(), 1u);
        ASSERT_EQ(s.msgs[0].type, SL_MSG_PING);
        ASSERT_TRUE(s.msgs[0].content.empty());
        ASSERT_TRUE(sl_conn_peer_confirmed(server));
        FeedResult c = feed_all(client, take_output(server));
        ASSERT_EQ(c.rc, SL_OK);
        ASSERT_TRUE(c.msgs.empty()) << "the PONG to the confirmation PING is not delivered";
    }
    // Sends one message from `from` and returns its frame (not yet delivered).
    static Bytes frame(sl_conn *from, int type, const Bytes &content) {
        EXPECT_EQ(sl_conn_send(from, type, content.data(), content.size()), SL_OK);
        return take_output(from);
    }
};

}  // namespace sltest
