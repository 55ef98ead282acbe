// seclink.hpp - header-only C++20 RAII wrapper over the C ABI in seclink.h.
// Errors become seclink::Error (carrying the sl_err code); handles free themselves.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "seclink/seclink.h"

namespace seclink {

class Error : public std::runtime_error {
public:
    explicit Error(int code) : std::runtime_error(sl_strerror(code)), code_(code) {}
    Error(int code, const std::string &context)
        : std::runtime_error(context + ": " + sl_strerror(code)), code_(code) {}
    int code() const noexcept { return code_; }
    const char *name() const noexcept { return sl_errname(code_); }

private:
    int code_;
};

inline void check(int rc) {
    if (rc != SL_OK) throw Error(rc);
}

using Key = std::array<uint8_t, SL_KEY_BYTES>;
using Bytes = std::span<const uint8_t>;

inline Bytes as_bytes(std::string_view s) noexcept {
    return {reinterpret_cast<const uint8_t *>(s.data()), s.size()};
}

namespace detail {
template <class F>
std::string path_from(F &&f) {
    size_t needed = 0;
    int rc = f(nullptr, 0, &needed);
    if (rc != SL_ERANGE) check(rc);
    std::string s(needed + 1, '\0');
    check(f(s.data(), s.size(), &needed));
    s.resize(needed);
    return s;
}
}  // namespace detail

// The key file to use: `explicit_path`, else $SECLINK_PSK_FILE, else the default location.
inline std::string key_path(const std::string &explicit_path = {}) {
    return detail::path_from([&](char *b, size_t c, size_t *n) {
        return sl_key_path(explicit_path.empty() ? nullptr : explicit_path.c_str(), b, c, n);
    });
}

inline std::string config_dir() {
    return detail::path_from([](char *b, size_t c, size_t *n) { return sl_config_dir(b, c, n); });
}

inline Key load_key(const std::string &path) {
    Key k{};
    int rc = sl_key_load(path.c_str(), k.data());
    if (rc != SL_OK) throw Error(rc, path);
    return k;
}

inline Key generate_key(const std::string &path) {
    Key k{};
    int rc = sl_key_generate(path.c_str(), k.data());
    if (rc != SL_OK) throw Error(rc, path);
    return k;
}

enum class Role { Client = SL_CLIENT, Server = SL_SERVER };

struct Event {
    sl_event_type type = SL_EVENT_NONE;
    sl_msg_type msg_type = SL_MSG_DATA;  // for SL_EVENT_MESSAGE
    Bytes data;                          // valid until the next call on the connection
    std::string_view text() const noexcept {
        return {reinterpret_cast<const char *>(data.data()), data.size()};
    }
};

// One seclink/1 connection, sans I/O (see sl_conn_* in seclink.h).
class Connection {
public:
    Connection(Role role, const Key &psk) {
        check(sl_conn_new(&c_, static_cast<sl_role>(role), psk.data()));
    }
    ~Connection() { sl_conn_free(c_); }
    Connection(Connection &&o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    Connection &operator=(Connection &&o) noexcept {
        if (this != &o) {
            sl_conn_free(c_);
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    void set_max_message(size_t n) { check(sl_conn_set_max_message(c_, n)); }
    void set_ephemeral_for_testing(const std::array<uint8_t, 32> &priv) {
        check(sl_conn_set_ephemeral_for_testing(c_, priv.data()));
    }
    // Server: accept any of these keys (key rotation, PROTOCOL.md 12). Before start().
    void set_psks(const std::vector<Key> &keys) {
        check(sl_conn_set_psks(c_, keys.empty() ? nullptr : keys.front().data(), keys.size()));
    }
    // Which of them frame 1 matched; -1 before.
    int psk_index() const noexcept { return sl_conn_psk_index(c_); }
    void start() { check(sl_conn_start(c_)); }
    // Sends a KEY_UPDATE now (PROTOCOL.md 13); the threshold of automatic ones (tests).
    void rekey() { check(sl_conn_rekey(c_)); }
    void set_rekey_bytes(uint64_t n) { check(sl_conn_set_rekey_bytes(c_, n)); }

    // Consumes input until one event is complete or `in` is used up; returns bytes consumed.
    size_t feed(Bytes in, Event &ev) {
        sl_event e{};
        size_t used = 0;
        check(sl_conn_feed(c_, in.data(), in.size(), &used, &e));
        ev.type = static_cast<sl_event_type>(e.type);
        ev.msg_type = static_cast<sl_msg_type>(e.msg_type);
        ev.data = Bytes(e.data, e.len);
        return used;
    }
    void feed_eof() { check(sl_conn_feed_eof(c_)); }

    void send(sl_msg_type type, Bytes data) { check(sl_conn_send(c_, type, data.data(), data.size())); }
    void send(sl_msg_type type, std::string_view text) { send(type, as_bytes(text)); }

    Bytes pending() const {
        const uint8_t *p = nullptr;
        size_t n = 0;
        check(sl_conn_pending(c_, &p, &n));
        return {p, n};
    }
    void consume(size_t n) { check(sl_conn_consume(c_, n)); }

    bool established() const noexcept { return sl_conn_is_established(c_) != 0; }
    bool closed() const noexcept { return sl_conn_is_closed(c_) != 0; }
    std::array<uint8_t, SL_HASH_BYTES> handshake_hash() const {
        std::array<uint8_t, SL_HASH_BYTES> h{};
        check(sl_conn_handshake_hash(c_, h.data()));
        return h;
    }

    sl_conn *get() const noexcept { return c_; }

private:
    sl_conn *c_ = nullptr;
};

}  // namespace seclink
