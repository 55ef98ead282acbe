// capi.cpp - the extern "C" boundary. Each function validates its pointers, and no C++
// exception crosses it: the engine is noexcept, and the calls that allocate are wrapped in
// guard() (guard.hpp).
#include <cstring>
#include <new>
#include <string>

#include "engine.hpp"
#include "guard.hpp"
#include "keyfile.hpp"
#include "seclink/seclink.h"

using seclink::detail::Connection;
using seclink::detail::guard;

struct sl_conn {
    Connection impl;
    seclink::detail::KeyRing ring;  // sl_conn_set_psks
    seclink::detail::Secret<SL_KEY_BYTES> static_key;  // sl_conn_set_static_key
    sl_conn(sl_role role, const uint8_t *psk) noexcept : impl(role, psk) {}
};

namespace {

#define SL_STR2(x) #x
#define SL_STR(x) SL_STR2(x)
constexpr const char kVersion[] =
    SL_STR(SL_VERSION_MAJOR) "." SL_STR(SL_VERSION_MINOR) "." SL_STR(SL_VERSION_PATCH);

int copy_out(const std::string &s, char *buf, size_t cap, size_t *needed) noexcept {
    if (s.empty()) return SL_EINVAL;
    if (needed != nullptr) *needed = s.size();
    if (buf == nullptr || cap <= s.size()) return SL_ERANGE;
    std::memcpy(buf, s.c_str(), s.size() + 1);
    return SL_OK;
}

}  // namespace

extern "C" {

const char *sl_version(void) { return kVersion; }

size_t sl_key_bytes(void) { return SL_KEY_BYTES; }
size_t sl_prefix_bytes(void) { return SL_PREFIX_BYTES; }
size_t sl_iv_bytes(void) { return SL_IV_BYTES; }
size_t sl_tag_bytes(void) { return SL_TAG_BYTES; }
size_t sl_overhead_bytes(void) { return SL_OVERHEAD_BYTES; }
size_t sl_max_ping(void) { return SL_MAX_PING; }
size_t sl_default_max_message(void) { return SL_DEFAULT_MAX_MESSAGE; }
unsigned sl_protocol_version(void) { return SL_PROTOCOL_VERSION; }

int sl_key_load(const char *path, uint8_t key[SL_KEY_BYTES]) {
    if (path == nullptr || key == nullptr) return SL_EINVAL;
    return seclink::detail::load_key(path, key);
}

int sl_key_load_ex(const char *path, uint8_t key[SL_KEY_BYTES], unsigned *warnings) {
    if (warnings != nullptr) *warnings = 0;
    if (path == nullptr || key == nullptr) return SL_EINVAL;
    return seclink::detail::load_key(path, key, warnings);
}

int sl_key_generate(const char *path, uint8_t key_out[SL_KEY_BYTES]) {
    if (path == nullptr || path[0] == '\0') return SL_EINVAL;
    return seclink::detail::generate_key(path, key_out);
}

int sl_key_path(const char *explicit_path, char *buf, size_t cap, size_t *needed) {
    return guard([&] { return copy_out(seclink::detail::key_path(explicit_path), buf, cap, needed); });
}

int sl_config_dir(char *buf, size_t cap, size_t *needed) {
    return guard([&] { return copy_out(seclink::detail::config_dir(), buf, cap, needed); });
}

int sl_conn_new(sl_conn **out, sl_role role, const uint8_t psk[SL_KEY_BYTES]) {
    if (out == nullptr) return SL_EINVAL;
    *out = nullptr;
    if (psk == nullptr || (role != SL_CLIENT && role != SL_SERVER)) return SL_EINVAL;
    *out = new (std::nothrow) sl_conn(role, psk);
    return *out != nullptr ? SL_OK : SL_ENOMEM;
}

void sl_conn_free(sl_conn *conn) { delete conn; }

int sl_conn_set_max_message(sl_conn *conn, size_t max_message) {
    return conn != nullptr ? conn->impl.set_max_message(max_message) : SL_EINVAL;
}

int sl_conn_set_max_send(sl_conn *conn, size_t max_send) {
    return conn != nullptr ? conn->impl.set_max_send(max_send) : SL_EINVAL;
}

int sl_conn_set_ephemeral_for_testing(sl_conn *conn, const uint8_t priv[32]) {
    return conn != nullptr && priv != nullptr ? conn->impl.set_ephemeral(priv) : SL_EINVAL;
}

int sl_conn_set_key_confirmation(sl_conn *conn, int on) {
    return conn != nullptr ? conn->impl.set_key_confirmation(on != 0) : SL_EINVAL;
}

int sl_conn_set_psks(sl_conn *conn, const uint8_t *psks, size_t count) {
    if (conn == nullptr || psks == nullptr || count == 0 || count > SL_MAX_PSKS) return SL_EINVAL;
    if (!conn->impl.configuring()) return SL_ESTATE;
    return guard([&]() -> int {
        conn->ring.assign(psks, count);
        return conn->impl.set_key_ring(&conn->ring);
    });
}

int sl_conn_set_mode(sl_conn *conn, int mode) { return conn != nullptr ? conn->impl.set_mode(mode) : SL_EINVAL; }

int sl_conn_set_server_key(sl_conn *conn, const uint8_t pub[32]) {
    return conn != nullptr && pub != nullptr ? conn->impl.set_expected_server_key(pub) : SL_EINVAL;
}

int sl_conn_set_static_key(sl_conn *conn, const uint8_t priv[32]) {
    if (conn == nullptr || priv == nullptr) return SL_EINVAL;
    if (!conn->impl.configuring()) return SL_ESTATE;
    std::memcpy(conn->static_key.data(), priv, SL_KEY_BYTES);
    return conn->impl.set_static_key(conn->static_key.data());
}

int sl_conn_set_accepted_modes(sl_conn *conn, unsigned mask) {
    return conn != nullptr ? conn->impl.set_accepted_modes(mask) : SL_EINVAL;
}

int sl_conn_server_key(const sl_conn *conn, uint8_t out[32]) {
    if (conn == nullptr || out == nullptr) return SL_EINVAL;
    if (conn->impl.server_static() == nullptr) return SL_ESTATE;
    std::memcpy(out, conn->impl.server_static(), 32);
    return SL_OK;
}

int sl_conn_set_login(sl_conn *conn, const char *user, const uint8_t *password, size_t password_len) {
    return conn != nullptr ? conn->impl.set_login(user, password, password_len) : SL_EINVAL;
}

int sl_conn_client_key(const sl_conn *conn, uint8_t out[32]) {
    if (conn == nullptr || out == nullptr) return SL_EINVAL;
    if (conn->impl.client_static() == nullptr) return SL_ESTATE;
    std::memcpy(out, conn->impl.client_static(), 32);
    return SL_OK;
}

unsigned sl_conn_server_modes(const sl_conn *conn) { return conn != nullptr ? conn->impl.server_modes() : 0; }

int sl_conn_rekey(sl_conn *conn) { return conn != nullptr ? conn->impl.rekey() : SL_EINVAL; }

int sl_conn_set_rekey_bytes(sl_conn *conn, uint64_t bytes) {
    return conn != nullptr ? conn->impl.set_rekey_bytes(bytes) : SL_EINVAL;
}

int sl_conn_rekeys(const sl_conn *conn, uint64_t *sent, uint64_t *received) {
    if (conn == nullptr) return SL_EINVAL;
    if (sent != nullptr) *sent = conn->impl.rekeys_sent();
    if (received != nullptr) *received = conn->impl.rekeys_received();
    return SL_OK;
}

int sl_conn_psk_index(const sl_conn *conn) { return conn != nullptr ? conn->impl.key_index() : -1; }

int sl_conn_peer_confirmed(const sl_conn *conn) { return conn != nullptr && conn->impl.peer_confirmed(); }

int sl_conn_start(sl_conn *conn) { return conn != nullptr ? conn->impl.start() : SL_EINVAL; }

int sl_conn_feed(sl_conn *conn, const uint8_t *data, size_t len, size_t *consumed, sl_event *ev) {
    if (conn == nullptr || consumed == nullptr || ev == nullptr || (data == nullptr && len != 0))
        return SL_EINVAL;
    return conn->impl.feed(data, len, consumed, ev);
}

int sl_conn_feed_eof(sl_conn *conn) { return conn != nullptr ? conn->impl.feed_eof() : SL_EINVAL; }

int sl_conn_send(sl_conn *conn, int msg_type, const uint8_t *data, size_t len) {
    return conn != nullptr ? conn->impl.send(msg_type, data, len) : SL_EINVAL;
}

int sl_conn_pending(const sl_conn *conn, const uint8_t **data, size_t *len) {
    if (conn == nullptr || data == nullptr || len == nullptr) return SL_EINVAL;
    *data = conn->impl.pending();
    *len = conn->impl.pending_size();
    return SL_OK;
}

int sl_conn_consume(sl_conn *conn, size_t n) { return conn != nullptr ? conn->impl.consume(n) : SL_EINVAL; }

size_t sl_conn_pending_size(const sl_conn *conn) { return conn != nullptr ? conn->impl.pending_size() : 0; }

int sl_conn_is_established(const sl_conn *conn) { return conn != nullptr && conn->impl.established(); }

int sl_conn_is_closed(const sl_conn *conn) { return conn != nullptr && conn->impl.closed(); }

int sl_conn_trim(sl_conn *conn) {
    if (conn == nullptr) return SL_EINVAL;
    conn->impl.trim();
    return SL_OK;
}

int sl_conn_set_trace(sl_conn *conn, sl_trace_fn fn, void *ud) {
    if (conn == nullptr) return SL_EINVAL;
    conn->impl.set_trace(fn, ud);
    return SL_OK;
}

int sl_conn_handshake_hash(const sl_conn *conn, uint8_t out[SL_HASH_BYTES]) {
    if (conn == nullptr || out == nullptr) return SL_EINVAL;
    if (!conn->impl.established()) return SL_ESTATE;
    std::memcpy(out, conn->impl.handshake_hash(), SL_HASH_BYTES);
    return SL_OK;
}

}  // extern "C"
