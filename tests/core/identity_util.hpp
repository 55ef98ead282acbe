// Shared by the identity tests (password_test, user_key_test, rotation_test): a log collector, a
// temporary directory, a server's policy config, clients of each mode, and a client driven
// against a session (waiting, through the session's wake, for the password checker's verdict).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace sltest {

struct Logs {
    std::vector<std::string> lines;
    static void fn(void *ud, int, const char *line) { static_cast<Logs *>(ud)->lines.emplace_back(line); }
    bool has(const std::string &text) const {
        for (const auto &l : lines)
            if (l.find(text) != std::string::npos) return true;
        return false;
    }
};

// A directory under /tmp, removed with the files named through file() at the end.
struct TempDir {
    std::string path;
    std::vector<std::string> files;
    TempDir() {
        char dir[] = "/tmp/seclink-id-XXXXXX";
        EXPECT_NE(mkdtemp(dir), nullptr);
        path = dir;
    }
    ~TempDir() {
        for (const auto &f : files) std::remove(f.c_str());
        rmdir(path.c_str());
    }
    std::string file(const std::string &name) {
        files.push_back(path + "/" + name);
        return files.back();
    }
};

// Base64 with padding, as authorized-keys files hold public keys.
inline std::string b64(const uint8_t *p, size_t n) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = uint32_t{p[i]} << 16 | (i + 1 < n ? uint32_t{p[i + 1]} << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        out += t[v >> 18 & 63];
        out += t[v >> 12 & 63];
        out += i + 1 < n ? t[v >> 6 & 63] : '=';
        out += i + 2 < n ? t[v & 63] : '=';
    }
    return out;
}

// A server's config: its PSK, its static key, logging into `logs` (the files and modes are the
// caller's to add).
inline sl_server_config identity_config(const Bytes &psk, const Bytes &server_priv, Logs &logs) {
    sl_server_config cfg;
    sl_server_config_init(&cfg);
    cfg.psk = psk.data();
    cfg.server_key = server_priv.data();
    cfg.log = &Logs::fn;
    cfg.log_ud = &logs;
    return cfg;
}

// A started client in `mode` for the server whose public key is `server_pub`: with `identity`
// (mode 3) or `user` and `password` (mode 4); `ephemeral` fixed for the vectors.
inline sl_conn *identity_client(const Bytes &psk, int mode, const uint8_t server_pub[32], const Bytes *identity = nullptr,
                                const std::string &user = "", const std::string &password = "",
                                const Bytes *ephemeral = nullptr) {
    sl_conn *c = nullptr;
    EXPECT_EQ(sl_conn_new(&c, SL_CLIENT, psk.data()), SL_OK);
    if (ephemeral != nullptr) {
        EXPECT_EQ(sl_conn_set_ephemeral_for_testing(c, ephemeral->data()), SL_OK);
    }
    EXPECT_EQ(sl_conn_set_mode(c, mode), SL_OK);
    EXPECT_EQ(sl_conn_set_server_key(c, server_pub), SL_OK);
    if (identity != nullptr) {
        EXPECT_EQ(sl_conn_set_static_key(c, identity->data()), SL_OK);
    }
    if (mode == SL_MODE_PASSWORD) {
        EXPECT_EQ(sl_conn_set_login(c, user.c_str(), reinterpret_cast<const uint8_t *>(password.data()), password.size()),
                  SL_OK);
    }
    EXPECT_EQ(sl_conn_start(c), SL_OK);
    return c;
}

// A started server engine of the vectors: `keys` (one or several PSKs, one after the other), its
// fixed ephemeral and its static key, every mode accepted.
inline sl_conn *vector_server(const Bytes &keys, const Bytes &ephemeral, const Bytes &server_static) {
    sl_conn *c = nullptr;
    EXPECT_EQ(sl_conn_new(&c, SL_SERVER, keys.data()), SL_OK);
    if (keys.size() > 32) {
        EXPECT_EQ(sl_conn_set_psks(c, keys.data(), keys.size() / 32), SL_OK);
    }
    EXPECT_EQ(sl_conn_set_ephemeral_for_testing(c, ephemeral.data()), SL_OK);
    EXPECT_EQ(sl_conn_set_static_key(c, server_static.data()), SL_OK);
    EXPECT_EQ(sl_conn_set_accepted_modes(c, SL_MODES_ALL), SL_OK);
    EXPECT_EQ(sl_conn_start(c), SL_OK);
    return c;
}

// A session's wake function (sl_session_set_wake): the password checker calls it from its own
// thread when the verdict is in; wait() blocks until then (no timing).
struct Waker {
    std::mutex mu;
    std::condition_variable cv;
    int woken = 0;
    static void fn(void *ud) {
        auto *w = static_cast<Waker *>(ud);
        std::lock_guard<std::mutex> lock(w->mu);
        ++w->woken;
        w->cv.notify_all();
    }
    void wait() {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return woken > 0; });
        --woken;
    }
};

// Feeds `in` to the session as a driver does; while a password check runs, waits for the wake,
// pumps, and feeds the rest.
inline void feed_session(sl_session *s, Waker &w, const Bytes &in, int64_t now) {
    size_t off = 0;
    while (sl_session_status(s) == SL_SESSION_OPEN && (off < in.size() || sl_session_busy(s))) {
        if (sl_session_busy(s)) {
            w.wait();
            sl_session_pump(s, now);
            continue;
        }
        size_t used = 0, mlen = 0;
        const uint8_t *msg = nullptr;
        EXPECT_EQ(sl_session_feed(s, in.data() + off, in.size() - off, now, &used, &msg, &mlen), SL_OK);
        off += used;
    }
}

// The client's frames to the session and the session's back, until the client has nothing more
// to say; returns the messages the client got.
inline FeedResult exchange(sl_conn *client, sl_session *s, Waker &w, int64_t now = 0) {
    FeedResult got;
    for (int round = 0; round < 3; ++round) {
        const Bytes in = take_output(client);
        if (in.empty()) break;
        feed_session(s, w, in, now);
        const uint8_t *out = nullptr;
        size_t n = 0;
        EXPECT_EQ(sl_session_pending(s, &out, &n), SL_OK);
        FeedResult r = feed_all(client, Bytes(out, out + n));
        EXPECT_EQ(sl_session_consume(s, n, now), SL_OK);
        got.handshake_done = got.handshake_done || r.handshake_done;
        if (r.rc != SL_OK) got.rc = r.rc;
        got.msgs.insert(got.msgs.end(), r.msgs.begin(), r.msgs.end());
    }
    return got;
}

}  // namespace sltest
