#include "engine.hpp"
#include "files.hpp"

#include <algorithm>
#include <cstring>

#include <openssl/crypto.h>

namespace seclink::detail {
namespace {

uint32_t load_be32(const uint8_t *p) noexcept {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void store_be32(uint8_t *p, uint32_t v) noexcept {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

}  // namespace

bool KeyRing::assign(const uint8_t *keys, size_t n) {
    if (n == 0 || n > SL_MAX_PSKS) return false;
    std::vector<std::unique_ptr<Secret<kKeyLen>>> v;
    v.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        v.push_back(std::make_unique<Secret<kKeyLen>>());
        std::memcpy(v.back()->data(), keys + i * kKeyLen, kKeyLen);
    }
    keys_ = std::move(v);
    return true;
}

Connection::Connection(sl_role role, const uint8_t psk[kKeyLen]) noexcept : role_(role) {
    std::memcpy(psk_, psk, kKeyLen);
}

Connection::~Connection() {
    wipe(psk_, kKeyLen);
    wipe(login_, sizeof login_);
}

int Connection::set_max_message(size_t n) noexcept {
    if (state_ != State::New) return SL_ESTATE;
    if (n > SL_MAX_MESSAGE_LIMIT) return SL_EINVAL;
    max_message_ = max_send_ = n;
    return SL_OK;
}

int Connection::set_max_send(size_t n) noexcept {
    if (state_ != State::New) return SL_ESTATE;
    if (n > SL_MAX_MESSAGE_LIMIT) return SL_EINVAL;
    max_send_ = n;
    return SL_OK;
}

int Connection::set_ephemeral(const uint8_t priv[kDhLen]) noexcept {
    if (state_ != State::New) return SL_ESTATE;
    return hs_.set_ephemeral(priv);
}

int Connection::set_key_confirmation(bool on) noexcept {
    if (state_ != State::New) return SL_ESTATE;
    key_confirmation_ = on;
    return SL_OK;
}

int Connection::set_key_ring(const KeyRing *ring) noexcept {
    if (state_ != State::New) return SL_ESTATE;
    if (role_ != SL_SERVER || ring == nullptr || ring->size() == 0) return SL_EINVAL;
    ring_ = ring;
    return SL_OK;
}

int Connection::set_rekey_bytes(uint64_t n) noexcept {
    if (n == 0) return SL_EINVAL;
    rekey_bytes_ = n;
    return SL_OK;
}

int Connection::rekey() noexcept {
    if (state_ == State::Failed || state_ == State::PeerClosed || sent_close_) return SL_ECLOSED;
    if (state_ != State::Open) return SL_ESTATE;
    int rc = seal(SL_MSG_KEY_UPDATE, nullptr, 0);
    if (rc == SL_OK) rc = noise_rekey(send_key_);
    if (rc == SL_OK) rc = send_.init(send_key_, true);
    if (rc != SL_OK) return rc == SL_ENONCE_EXHAUSTED ? rc : fail(rc);
    sent_under_key_ = 0;
    ++rekeys_sent_;
    return SL_OK;
}

int Connection::set_mode(int mode) noexcept {
    if (state_ != State::New) return SL_ESTATE;
    if (role_ != SL_CLIENT || mode < SL_MODE_PSK || mode > SL_MODE_PASSWORD) return SL_EINVAL;
    mode_ = mode;
    return SL_OK;
}

int Connection::set_expected_server_key(const uint8_t pub[kDhLen]) noexcept {
    if (state_ != State::New) return SL_ESTATE;
    if (role_ != SL_CLIENT) return SL_EINVAL;
    std::memcpy(expected_, pub, kDhLen);
    has_expected_ = true;
    return SL_OK;
}

int Connection::set_static_key(const uint8_t *priv) noexcept {
    if (state_ != State::New) return SL_ESTATE;
    if (priv == nullptr) return SL_EINVAL;  // a server's key, or a mode-3 client's identity
    static_ = priv;
    return SL_OK;
}

int Connection::set_accepted_modes(unsigned mask) noexcept {
    if (state_ != State::New) return SL_ESTATE;
    if (role_ != SL_SERVER || mask == 0 || (mask & ~SL_MODES_ALL) != 0) return SL_EINVAL;
    accepted_ = mask;
    return SL_OK;
}

int Connection::set_login(const char *user, const uint8_t *password, size_t len) noexcept {
    if (state_ != State::New) return SL_ESTATE;
    const size_t n = user != nullptr ? std::strlen(user) : 0;
    if (role_ != SL_CLIENT || n == 0 || n > 32 || len > SL_MAX_PASSWORD || (password == nullptr && len != 0))
        return SL_EINVAL;
    login_[0] = static_cast<uint8_t>(n);
    std::memcpy(login_ + 1, user, n);
    if (len != 0) std::memcpy(login_ + 1 + n, password, len);
    login_len_ = 1 + n + len;
    return SL_OK;
}

int Connection::start() noexcept {
    if (state_ != State::New) return SL_ESTATE;
    if (role_ == SL_SERVER) {  // the mode, so the handshake, is known with frame 1
        state_ = State::AwaitFrame1;
        return SL_OK;
    }
    if (mode_ == SL_MODE_USER_KEY && static_ == nullptr) return SL_EINVAL;  // no identity to show
    if (mode_ == SL_MODE_PASSWORD && login_len_ == 0) return SL_EINVAL;     // no user name
    const uint8_t prologue[5] = {'S', 'L', 'N', 'K', static_cast<uint8_t>(mode_)};
    int rc = hs_.init(true, prologue, sizeof prologue, psk_,
                      mode_ == SL_MODE_USER_KEY ? Handshake::Pattern::XXpsk3
                      : mode_ == SL_MODE_PSK    ? Handshake::Pattern::NNpsk0
                                                : Handshake::Pattern::NXpsk2);  // modes 2 and 4
    wipe(psk_, kKeyLen);  // the handshake keeps the only copy, and erases it at split
    if (rc == SL_OK && mode_ == SL_MODE_USER_KEY) rc = hs_.set_static(static_);
    if (rc != SL_OK) return fail(rc);
    uint8_t msg[SL_HANDSHAKE1_BYTES - sizeof prologue];
    size_t len = 0;
    if ((rc = hs_.write_message(nullptr, 0, msg, &len)) != SL_OK) return fail(rc);
    uint8_t *body = append_frame(sizeof prologue + len);
    if (body == nullptr) return fail(SL_ENOMEM);
    std::memcpy(body, prologue, sizeof prologue);  // "SLNK" || version: the prologue's bytes
    std::memcpy(body + sizeof prologue, msg, len);
    trace(true, 1, body, sizeof kPrologue + len);
    state_ = State::AwaitFrame2;
    return SL_OK;
}

size_t Connection::min_body() const noexcept {
    switch (state_) {
    case State::AwaitFrame1: return SL_HANDSHAKE1_BYTES;
    case State::AwaitFrame2: return SL_HANDSHAKE2_BYTES;
    case State::AwaitFrame3: return kHandshake3MinBody;
    default: return kTransportMinBody;
    }
}

size_t Connection::max_body() const noexcept {
    if (state_ == State::AwaitFrame1 || state_ == State::AwaitFrame2 || state_ == State::AwaitFrame3)
        return SL_MAX_HANDSHAKE_BYTES;
    // Until the client has proved that it holds the key, a server buffers no more for it than
    // for a handshake frame (PROTOCOL.md 4.1): a replayed frame 1 buys a peer a few bytes only.
    if (!confirmed_) return std::min<size_t>(max_message_ + kTransportMinBody, SL_MAX_FIRST_FRAME_BYTES);
    return max_message_ + kTransportMinBody;
}

int Connection::fail(int err) noexcept {
    state_ = State::Failed;
    hs_.clear();
    send_.reset();
    recv_.reset();
    body_.release();
    plain_.release();
    return err;
}

int Connection::feed(const uint8_t *data, size_t len, size_t *consumed, sl_event *ev) noexcept {
    *consumed = 0;
    *ev = sl_event{SL_EVENT_NONE, 0, nullptr, 0};
    switch (state_) {
    case State::New: return SL_ESTATE;
    case State::Failed: return SL_ECLOSED;
    case State::PeerClosed: *consumed = len; return SL_OK;  // nothing after CLOSE counts
    default: break;
    }
    size_t pos = 0;
    while (pos < len) {
        if (prefix_have_ < SL_PREFIX_BYTES) {
            size_t take = SL_PREFIX_BYTES - prefix_have_;
            if (take > len - pos) take = len - pos;
            std::memcpy(prefix_ + prefix_have_, data + pos, take);
            prefix_have_ += take;
            pos += take;
            if (prefix_have_ < SL_PREFIX_BYTES) break;
            // The length is untrusted: bound it before anything is allocated or read.
            size_t n = load_be32(prefix_);
            if (n < min_body()) return fail(SL_EFRAME_TOO_SHORT);
            if (n > max_body()) return fail(SL_EFRAME_TOO_LARGE);
            body_len_ = n;
            body_have_ = 0;
            if (len - pos >= n) {  // the whole body is here: decrypt straight from the input
                pos += n;
                prefix_have_ = 0;
                *consumed = pos;
                return on_frame(data + pos - n, n, ev);
            }
            if (pos == len) break;  // the body has not started arriving
        }
        size_t take = body_len_ - body_have_;
        if (take > len - pos) take = len - pos;
        if (state_ == State::Open && trace_ == nullptr) {
            int rc = stream_transport(data + pos, take);
            if (rc != SL_OK) return fail(rc);
            pos += take;
            if (body_have_ == body_len_) {
                prefix_have_ = 0;
                *consumed = pos;
                return finish_streamed(ev);
            }
            continue;
        }
        // Grow with the bytes that actually arrived, not with the announced length: a peer
        // that announces 16 MiB and sends 10 bytes costs 10 bytes (plus geometric slack).
        if (!body_.reserve(body_have_ + take, body_have_, body_len_)) return fail(SL_ENOMEM);
        std::memcpy(body_.data() + body_have_, data + pos, take);
        body_have_ += take;
        pos += take;
        if (body_have_ == body_len_) {
            prefix_have_ = 0;
            *consumed = pos;
            return on_frame(body_.data(), body_len_, ev);
        }
    }
    *consumed = pos;
    return SL_OK;
}

int Connection::feed_eof() noexcept {
    if (state_ == State::Failed) return SL_ECLOSED;
    if (prefix_have_ != 0 && state_ != State::PeerClosed) return fail(SL_ETRUNCATED);
    return SL_OK;
}

// Every frame yields exactly one event: handshake done, or one message.
int Connection::on_frame(const uint8_t *body, size_t len, sl_event *ev) noexcept {
    switch (state_) {
    case State::AwaitFrame1: return on_handshake1(body, len, ev);
    case State::AwaitFrame2: return on_handshake2(body, len, ev);
    case State::AwaitFrame3: return on_handshake3(body, len, ev);
    case State::Open: return on_transport(body, len, ev);
    default: return fail(SL_EINTERNAL);
    }
}

int Connection::on_handshake1(const uint8_t *body, size_t len, sl_event *ev) noexcept {
    if (std::memcmp(body, kMagic, sizeof kMagic) != 0) return fail(SL_EBAD_MAGIC);
    const uint8_t version = body[sizeof kMagic];
    // PROTOCOL.md 14.2: no mode, or one this server does not accept (or cannot: no static key).
    if (version < SL_MODE_PSK || version > SL_MODE_PASSWORD || (accepted_ & (1u << version)) == 0 ||
        (version != SL_MODE_PSK && static_ == nullptr))
        return fail(SL_EBAD_VERSION);
    uint8_t payload[SL_MAX_HANDSHAKE_BYTES];  // version 1 ignores the payload's content
    size_t payload_len = 0;
    int rc = SL_EHANDSHAKE_AUTH;
    if (version != SL_MODE_PSK) {  // NXpsk2 or XXpsk3 with the first key (XXpsk3: until frame 3, PROTOCOL.md 12)
        rc = hs_.init(false, body, sizeof kPrologue, ring_ != nullptr ? (*ring_)[0] : psk_.data(),
                      version == SL_MODE_USER_KEY ? Handshake::Pattern::XXpsk3 : Handshake::Pattern::NXpsk2);
        if (rc == SL_OK) rc = hs_.set_static(static_);
        if (rc == SL_OK) rc = hs_.read_message(body + sizeof kPrologue, len - sizeof kPrologue, payload, &payload_len);
        if (rc == SL_OK) key_index_ = 0;
        mode_ = version;
    } else if (ring_ == nullptr) {
        rc = hs_.init(false, kPrologue, sizeof kPrologue, psk_);
        if (rc == SL_OK) rc = hs_.read_message(body + sizeof kPrologue, len - sizeof kPrologue, payload, &payload_len);
        if (rc == SL_OK) key_index_ = 0;
    } else {
        // Key rotation (PROTOCOL.md 12): trial decryption of frame 1's payload under each key in
        // turn, at most SL_MAX_PSKS; the first whose tag verifies is the session's key.
        for (size_t i = 0; i < ring_->size() && rc == SL_EHANDSHAKE_AUTH; ++i) {
            rc = hs_.init(false, kPrologue, sizeof kPrologue, (*ring_)[i]);
            if (rc == SL_OK) rc = hs_.read_message(body + sizeof kPrologue, len - sizeof kPrologue, payload, &payload_len);
            if (rc == SL_OK) key_index_ = static_cast<int>(i);
        }
    }
    wipe(payload, payload_len);
    wipe(psk_, kKeyLen);  // the handshake keeps the only copy, and erases it at split
    if (rc != SL_OK) return fail(rc);
    trace(false, 1, body, len);
    uint8_t msg[SL_HANDSHAKE2_BYTES + kDhLen + SL_TAG_BYTES];
    size_t msg_len = 0;
    if ((rc = hs_.write_message(nullptr, 0, msg, &msg_len)) != SL_OK) return fail(rc);
    uint8_t *out = append_frame(msg_len);
    if (out == nullptr) return fail(SL_ENOMEM);
    std::memcpy(out, msg, msg_len);
    trace(true, 2, out, msg_len);
    if (mode_ == SL_MODE_USER_KEY) {  // frame 3 completes the handshake (PROTOCOL.md 15)
        state_ = State::AwaitFrame3;
        return SL_OK;
    }
    return finish_handshake(ev);
}

int Connection::on_handshake3(const uint8_t *body, size_t len, sl_event *ev) noexcept {
    uint8_t payload[SL_MAX_HANDSHAKE_BYTES];
    size_t payload_len = 0;
    int rc;
    if (ring_ != nullptr) {  // key rotation (PROTOCOL.md 12): XXpsk3 mixes the PSK in only here
        const uint8_t *keys[SL_MAX_PSKS];
        const size_t n = std::min<size_t>(ring_->size(), SL_MAX_PSKS);
        for (size_t i = 0; i < n; ++i) keys[i] = (*ring_)[i];
        size_t which = 0;
        rc = hs_.read_message_any_key(body, len, keys, n, payload, &payload_len, &which);
        if (rc == SL_OK) key_index_ = static_cast<int>(which);
    } else {
        rc = hs_.read_message(body, len, payload, &payload_len);
    }
    wipe(payload, payload_len);
    if (rc != SL_OK) return fail(rc);
    trace(false, 4, body, len);
    std::memcpy(client_static_, hs_.remote_static(), kDhLen);
    has_client_static_ = true;
    confirmed_ = true;  // frame 3 proved the PSK and the client's key: no confirmation PING follows
    return finish_handshake(ev);
}

int Connection::on_handshake2(const uint8_t *body, size_t len, sl_event *ev) noexcept {
    // PROTOCOL.md 14.2: a server refusing our mode says which modes it accepts (unauthenticated).
    if (std::memcmp(body, kMagic, sizeof kMagic) == 0 && body[sizeof kMagic] == 0) {
        const size_t n = std::min<size_t>(body[5], len - 6);
        for (size_t i = 0; i < n; ++i)
            if (body[6 + i] < 32) server_modes_ |= 1u << body[6 + i];
        return fail(SL_EMODE_REFUSED);
    }
    uint8_t payload[SL_MAX_HANDSHAKE_BYTES];
    size_t payload_len = 0;
    int rc = hs_.read_message(body, len, payload, &payload_len);
    wipe(payload, payload_len);
    if (rc != SL_OK) return fail(rc);
    if (mode_ != SL_MODE_PSK) {  // frame 2 verified: the server holds this key (and, mode 2, the PSK)
        std::memcpy(server_static_, hs_.remote_static(), kDhLen);
        has_server_static_ = true;
        if (!has_expected_) return fail(SL_ESERVER_KEY_UNKNOWN);
        if (CRYPTO_memcmp(server_static_, expected_, kDhLen) != 0) return fail(SL_ESERVER_KEY_CHANGED);
    }
    if (mode_ == SL_MODE_USER_KEY) {  // frame 3: our identity, then the PSK (PROTOCOL.md 15)
        uint8_t msg[kHandshake3MinBody];
        size_t msg_len = 0;
        if ((rc = hs_.write_message(nullptr, 0, msg, &msg_len)) != SL_OK) return fail(rc);
        uint8_t *out = append_frame(msg_len);
        if (out == nullptr) return fail(SL_ENOMEM);
        std::memcpy(out, msg, msg_len);
        trace(true, 4, out, msg_len);
    }
    trace(false, 2, body, len);
    return finish_handshake(ev);
}

int Connection::finish_handshake(sl_event *ev) noexcept {
    Secret<kKeyLen> k1, k2;
    int rc = hs_.split(k1, k2, h_);
    // k1 protects client -> server, k2 server -> client.
    const bool client = role_ == SL_CLIENT;
    if (rc == SL_OK) rc = send_.init(client ? k1 : k2, true);
    if (rc == SL_OK) rc = recv_.init(client ? k2 : k1, false);
    if (rc != SL_OK) return fail(rc);
    std::memcpy(send_key_, client ? k1 : k2, kKeyLen);
    std::memcpy(recv_key_, client ? k2 : k1, kKeyLen);
    state_ = State::Open;
    ev->type = SL_EVENT_HANDSHAKE_DONE;
    if (!client) return SL_OK;
    confirmed_ = true;  // frame 2 decrypted: the server holds the key
    if (mode_ == SL_MODE_PASSWORD) {  // PROTOCOL.md 16: AUTH first, instead of the PING
        rc = seal(SL_MSG_AUTH, login_, login_len_);
        wipe(login_, sizeof login_);
        return rc != SL_OK ? fail(rc) : SL_OK;
    }
    if (!key_confirmation_ || mode_ == SL_MODE_USER_KEY) return SL_OK;  // mode 3: frame 3 confirmed it
    // Key confirmation: the client's first transport frame is an empty PING, queued at once
    // (so it is pipelined with whatever the application sends next, at no extra round trip).
    if ((rc = seal(SL_MSG_PING, nullptr, 0)) != SL_OK) return fail(rc);
    await_confirm_pong_ = true;
    return SL_OK;
}

int Connection::on_transport(const uint8_t *body, size_t len, sl_event *ev) noexcept {
    uint8_t iv[SL_IV_BYTES];
    make_nonce(recv_n_, iv);
    // 2^64-1 is never sent (PROTOCOL.md 4), so a receiver that reached it accepts nothing more.
    if (recv_n_ == UINT64_MAX || std::memcmp(body, iv, SL_IV_BYTES) != 0) return fail(SL_EBAD_COUNTER);
    const size_t ct_len = len - SL_IV_BYTES - SL_TAG_BYTES;
    if (!plain_.reserve(ct_len)) return fail(SL_ENOMEM);
    if (!recv_.open(iv, nullptr, 0, body + SL_IV_BYTES, ct_len, body + len - SL_TAG_BYTES, plain_.data()))
        return fail(SL_EAUTH);
    return on_plaintext(body, len, ev);
}

// Consumes the next n bytes of a transport frame's body: IV, then ciphertext (decrypted on
// the spot into plain_), then tag.
int Connection::stream_transport(const uint8_t *p, size_t n) noexcept {
    const size_t ct_end = body_len_ - SL_TAG_BYTES;
    while (n > 0) {
        size_t k;
        if (body_have_ < SL_IV_BYTES) {
            k = std::min(n, SL_IV_BYTES - body_have_);
            std::memcpy(iv_ + body_have_, p, k);
            if (body_have_ + k == SL_IV_BYTES) {
                uint8_t want[SL_IV_BYTES];
                make_nonce(recv_n_, want);
                if (recv_n_ == UINT64_MAX || std::memcmp(iv_, want, SL_IV_BYTES) != 0) return SL_EBAD_COUNTER;
                if (!recv_.open_begin(iv_)) return SL_ECRYPTO;
            }
        } else if (body_have_ < ct_end) {
            k = std::min(n, ct_end - body_have_);
            // Like body_: plain_ grows with the ciphertext that arrived, not the announced length.
            const size_t done = body_have_ - SL_IV_BYTES;
            if (!plain_.reserve(done + k, done, ct_end - SL_IV_BYTES)) return SL_ENOMEM;
            if (!recv_.open_update(p, k, plain_.data() + done)) return SL_ECRYPTO;
        } else {
            k = std::min(n, body_len_ - body_have_);
            std::memcpy(tag_ + (body_have_ - ct_end), p, k);
        }
        body_have_ += k;
        p += k;
        n -= k;
    }
    return SL_OK;
}

int Connection::finish_streamed(sl_event *ev) noexcept {
    const size_t ct_len = body_len_ - SL_IV_BYTES - SL_TAG_BYTES;
    if (!recv_.open_finish(tag_)) {
        wipe(plain_.data(), ct_len);  // decrypted but not authentic: never released
        return fail(SL_EAUTH);
    }
    return on_plaintext(nullptr, body_len_, ev);
}

// A transport frame whose tag verified: plain_ holds type || content. `body` is the frame's
// body for tracing (NULL when it was decrypted in pieces, which tracing turns off).
int Connection::on_plaintext(const uint8_t *body, size_t len, sl_event *ev) noexcept {
    uint8_t *p = plain_.data();
    ++recv_n_;
    const size_t ct_len = len - SL_IV_BYTES - SL_TAG_BYTES;
    const uint8_t type = p[0];
    const size_t content_len = ct_len - SL_TYPE_BYTES;
    switch (type) {
    case SL_MSG_DATA:
        if (peer_eof_) return fail(SL_EBAD_EOF);  // DATA after the peer's EOF (PROTOCOL.md 9)
        break;
    case SL_MSG_CLOSE: break;
    case SL_MSG_PING:
    case SL_MSG_PONG:
        if (content_len > SL_MAX_PING) return fail(SL_EBAD_PING);
        break;
    case SL_MSG_EOF:
        if (content_len != 0 || peer_eof_) return fail(SL_EBAD_EOF);
        peer_eof_ = true;
        break;
    case SL_MSG_KEY_UPDATE:
        if (content_len != 0) return fail(SL_EBAD_KEY_UPDATE);
        return on_key_update(body, len);
    case SL_MSG_AUTH:  // only as a mode-4 client's first frame, checked below
        if (!(role_ == SL_SERVER && mode_ == SL_MODE_PASSWORD && !confirmed_)) return fail(SL_EBAD_TYPE);
        break;
    default:
        if (!is_file_msg(type)) return fail(SL_EBAD_TYPE);  // file messages: PROTOCOL.md 10
        break;
    }
    if (role_ == SL_SERVER && mode_ == SL_MODE_PASSWORD && !confirmed_) {  // PROTOCOL.md 16
        const size_t n = content_len > 0 ? p[1] : 0;
        if (type != SL_MSG_AUTH || n < 1 || n > 32 || content_len < 1 + n || content_len - 1 - n > SL_MAX_PASSWORD)
            return fail(SL_EBAD_AUTH);
    }
    if (body != nullptr && type != SL_MSG_AUTH) trace(false, 3, body, len, recv_n_ - 1, type, p + 1, content_len);
    if (body != nullptr && type == SL_MSG_AUTH) trace(false, 3, body, len, recv_n_ - 1, type, nullptr, 0);
    confirmed_ = true;  // (server) the client's first transport frame verified: it holds the key
    if (type == SL_MSG_PONG && await_confirm_pong_) {
        await_confirm_pong_ = false;  // the answer to the key-confirmation PING: not delivered
        return SL_OK;
    }
    if (type == SL_MSG_CLOSE) state_ = State::PeerClosed;
    if (type == SL_MSG_PING && !sent_close_) {
        int rc = seal(SL_MSG_PONG, p + 1, content_len);
        if (rc != SL_OK) return fail(rc);
    }
    *ev = sl_event{SL_EVENT_MESSAGE, type, p + 1, content_len};
    return SL_OK;
}

// A verified KEY_UPDATE (PROTOCOL.md 13): the next frame is opened with REKEY(k). Never delivered.
int Connection::on_key_update(const uint8_t *body, size_t len) noexcept {
    if (body != nullptr) trace(false, 3, body, len, recv_n_ - 1, SL_MSG_KEY_UPDATE, nullptr, 0);
    confirmed_ = true;  // like any verified frame (PROTOCOL.md 4.1)
    int rc = noise_rekey(recv_key_);
    if (rc == SL_OK) rc = recv_.init(recv_key_, false);
    if (rc != SL_OK) return fail(rc);
    ++rekeys_received_;
    return SL_OK;
}

int Connection::send(int type, const uint8_t *data, size_t len) noexcept {
    if (data == nullptr && len != 0) return SL_EINVAL;
    if ((type < SL_MSG_DATA || type > SL_MSG_PONG) && type != SL_MSG_EOF && !is_file_msg(type)) return SL_EINVAL;
    if (state_ == State::Failed || state_ == State::PeerClosed || sent_close_) return SL_ECLOSED;
    if (state_ != State::Open) return SL_ESTATE;
    if (type == SL_MSG_EOF && len != 0) return SL_EINVAL;
    if ((type == SL_MSG_DATA || type == SL_MSG_EOF) && sent_eof_) return SL_ESTATE;  // nothing after our EOF
    if ((type == SL_MSG_PING || type == SL_MSG_PONG) && len > SL_MAX_PING) return SL_EBAD_PING;
    if (len > max_send_) return SL_EMSG_TOO_LARGE;
    int rc = seal(static_cast<uint8_t>(type), data, len);
    if (rc == SL_OK && type == SL_MSG_CLOSE) sent_close_ = true;
    if (rc == SL_OK && type == SL_MSG_EOF) sent_eof_ = true;
    return rc;
}

int Connection::seal(uint8_t type, const uint8_t *data, size_t len) noexcept {
    if (send_n_ == UINT64_MAX) return SL_ENONCE_EXHAUSTED;
    const size_t body_len = kTransportMinBody + len;
    uint8_t *body = append_frame(body_len);
    if (body == nullptr) return SL_ENOMEM;
    make_nonce(send_n_, body);
    uint8_t *ct = body + SL_IV_BYTES;
    int rc = send_.seal(body, nullptr, 0, &type, 1, data, len, ct, ct + 1 + len);
    if (rc != SL_OK) {
        out_len_ -= SL_PREFIX_BYTES + body_len;
        return fail(rc);
    }
    // The password in an AUTH is never traced (PROTOCOL.md 16: no password in any log).
    trace(true, 3, body, body_len, send_n_, type, type == SL_MSG_AUTH ? nullptr : data, type == SL_MSG_AUTH ? 0 : len);
    ++send_n_;
    if (type == SL_MSG_KEY_UPDATE || type == SL_MSG_CLOSE) return SL_OK;
    // Automatic rekeying (PROTOCOL.md 13): bytes, not frames, with one block per frame for the tag.
    sent_under_key_ += 1 + len + SL_TAG_BYTES;
    if (sent_under_key_ < rekey_bytes_) return SL_OK;
    rc = rekey();
    return rc == SL_ENONCE_EXHAUSTED ? SL_OK : rc;  // the message went; the next send says so
}

uint8_t *Connection::append_frame(size_t n) noexcept {
    const size_t total = SL_PREFIX_BYTES + n;
    if (out_pos_ == out_len_) {
        out_pos_ = out_len_ = 0;
    } else if (out_pos_ != 0 && out_len_ + total > out_.capacity()) {
        std::memmove(out_.data(), out_.data() + out_pos_, out_len_ - out_pos_);
        out_len_ -= out_pos_;
        out_pos_ = 0;
    }
    if (!out_.reserve(out_len_ + total, out_len_)) return nullptr;
    uint8_t *p = out_.data() + out_len_;
    store_be32(p, static_cast<uint32_t>(n));
    out_len_ += total;
    return p + SL_PREFIX_BYTES;
}

bool Connection::reserve_incoming() noexcept {
    if (prefix_have_ != SL_PREFIX_BYTES || state_ != State::Open) return true;
    if (trace_ == nullptr) {  // streamed: the plaintext buffer is what grows
        const size_t done = body_have_ > SL_IV_BYTES ? std::min(body_have_, body_len_ - SL_TAG_BYTES) - SL_IV_BYTES : 0;
        const size_t want = body_len_ - SL_IV_BYTES - SL_TAG_BYTES;
        return plain_.reserve(want, done, want);
    }
    return body_.reserve(body_len_, body_have_, body_len_);
}

void Connection::trim() noexcept {
    if (prefix_have_ != SL_PREFIX_BYTES) {  // not mid-frame (then body_ or plain_ holds part of it)
        body_.release();
        plain_.release();
    }
    if (pending_size() == 0) {
        out_.release();
        out_pos_ = out_len_ = 0;
    }
}

int Connection::consume(size_t n) noexcept {
    if (n > pending_size()) return SL_EINVAL;
    out_pos_ += n;
    if (out_pos_ == out_len_) out_pos_ = out_len_ = 0;
    return SL_OK;
}

}  // namespace seclink::detail
