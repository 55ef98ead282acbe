// engine.hpp - the seclink/1 connection state machine (docs/PROTOCOL.md), sans I/O: bytes in,
// events and bytes out. No sockets, clocks or threads; one object per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "buffer.hpp"
#include "crypto.hpp"
#include "noise.hpp"
#include "secure_mem.hpp"
#include "seclink/seclink.h"

namespace seclink::detail {

inline constexpr uint8_t kPrologue[5] = {'S', 'L', 'N', 'K', 0x01};
inline constexpr uint8_t kMagic[4] = {'S', 'L', 'N', 'K'};
inline constexpr size_t kTransportMinBody = SL_IV_BYTES + SL_TYPE_BYTES + SL_TAG_BYTES;  // 29
inline constexpr size_t kHandshake3MinBody = 32 + 16 + 16;  // mode 3's frame 3 (PROTOCOL.md 15)

// Key rotation (PROTOCOL.md 12): the pre-shared keys a server accepts, in the order they are tried
// on frame 1. Each key lives in dump-proof memory (secure_mem.hpp) and is wiped with the ring.
class KeyRing {
public:
    // Copies n keys (n * kKeyLen bytes); false if n is 0 or over SL_MAX_PSKS. Throws bad_alloc.
    bool assign(const uint8_t *keys, size_t n);
    size_t size() const noexcept { return keys_.size(); }
    const uint8_t *operator[](size_t i) const noexcept { return keys_[i]->data(); }

private:
    std::vector<std::unique_ptr<Secret<kKeyLen>>> keys_;
};

class Connection {
public:
    Connection(sl_role role, const uint8_t psk[kKeyLen]) noexcept;
    ~Connection();
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    int set_max_message(size_t n) noexcept;
    int set_max_send(size_t n) noexcept;
    int set_ephemeral(const uint8_t priv[kDhLen]) noexcept;
    int set_key_confirmation(bool on) noexcept;
    // Server: try each key of `ring` on frame 1 instead of the constructor's key (PROTOCOL.md 12).
    // Not copied: the ring must outlive the handshake. Before start().
    int set_key_ring(const KeyRing *ring) noexcept;
    // Server: which key of the ring frame 1 matched (0 without a ring); -1 before frame 1.
    int key_index() const noexcept { return key_index_; }
    bool configuring() const noexcept { return state_ == State::New; }  // before start()
    // Modes (PROTOCOL.md 14). Client: the mode it asks for, the server key it expects (NULL: none,
    // so a mode-2 server's key is SERVER_KEY_UNKNOWN). Server: its static key (not copied: it must
    // outlive the handshake) and the modes it accepts (a bit mask of 1 << mode).
    int set_mode(int mode) noexcept;
    int set_expected_server_key(const uint8_t pub[kDhLen]) noexcept;
    int set_static_key(const uint8_t *priv) noexcept;
    int set_accepted_modes(unsigned mask) noexcept;
    int set_login(const char *user, const uint8_t *password, size_t len) noexcept;
    // Client: the static key a mode-2 server sent (also after SERVER_KEY_*), else NULL; the modes a
    // server refusing ours accepts (after MODE_REFUSED), else 0.
    const uint8_t *server_static() const noexcept { return has_server_static_ ? server_static_ : nullptr; }
    unsigned server_modes() const noexcept { return server_modes_; }
    int mode() const noexcept { return mode_; }  // server: that of frame 1, once it verified
    // Server, mode 3: the client's static key once frame 3 verified, else NULL.
    const uint8_t *client_static() const noexcept { return has_client_static_ ? client_static_ : nullptr; }
    int start() noexcept;
    // Rekeying (PROTOCOL.md 13): KEY_UPDATE now, then the next sending key.
    int rekey() noexcept;
    int set_rekey_bytes(uint64_t n) noexcept;
    uint64_t rekeys_sent() const noexcept { return rekeys_sent_; }
    uint64_t rekeys_received() const noexcept { return rekeys_received_; }
    int feed(const uint8_t *data, size_t len, size_t *consumed, sl_event *ev) noexcept;
    int feed_eof() noexcept;
    int send(int type, const uint8_t *data, size_t len) noexcept;
    void set_trace(sl_trace_fn fn, void *ud) noexcept {
        trace_ = fn;
        trace_ud_ = ud;
    }

    const uint8_t *pending() const noexcept { return out_.data() + out_pos_; }
    size_t pending_size() const noexcept { return out_len_ - out_pos_; }
    int consume(size_t n) noexcept;
    // Frees the buffers a quiet connection does not need (they regrow on demand).
    void trim() noexcept;

    bool established() const noexcept { return state_ == State::Open || state_ == State::PeerClosed; }
    bool closed() const noexcept {
        return state_ == State::Failed || state_ == State::PeerClosed || sent_close_;
    }
    bool sent_eof() const noexcept { return sent_eof_; }
    bool peer_eof() const noexcept { return peer_eof_; }
    const uint8_t *handshake_hash() const noexcept { return h_; }
    // Server: the client has proved that it holds the key (its first transport frame verified).
    // Client: the server proved it with frame 2.
    bool peer_confirmed() const noexcept { return confirmed_; }
    // The body length announced by the frame being received, 0 between frames.
    size_t incoming_frame_size() const noexcept { return prefix_have_ == SL_PREFIX_BYTES ? body_len_ : 0; }
    size_t incoming_frame_remaining() const noexcept {
        return prefix_have_ == SL_PREFIX_BYTES ? body_len_ - body_have_ : 0;
    }
    // Allocates, once and exactly, the buffer for the rest of the frame being received (for a
    // caller that has budgeted the announced size; otherwise buffers grow with what arrives).
    bool reserve_incoming() noexcept;
    // Bytes of heap this connection holds for messages (input, plaintext, output).
    size_t buffered_bytes() const noexcept { return body_.capacity() + plain_.capacity() + out_.capacity(); }

    // Tests only: jump the send counter (to reach the 2^64-1 limit without 2^64 messages).
    void set_send_counter_for_testing(uint64_t n) noexcept { send_n_ = n; }
    // Tests only: jump the receive counter (the receiver side of the same limit).
    void set_recv_counter_for_testing(uint64_t n) noexcept { recv_n_ = n; }

private:
    enum class State { New, AwaitFrame1, AwaitFrame2, AwaitFrame3, Open, PeerClosed, Failed };

    size_t min_body() const noexcept;
    size_t max_body() const noexcept;
    int fail(int err) noexcept;
    int on_frame(const uint8_t *body, size_t len, sl_event *ev) noexcept;
    int on_handshake1(const uint8_t *body, size_t len, sl_event *ev) noexcept;
    int on_handshake2(const uint8_t *body, size_t len, sl_event *ev) noexcept;
    int on_handshake3(const uint8_t *body, size_t len, sl_event *ev) noexcept;
    int on_transport(const uint8_t *body, size_t len, sl_event *ev) noexcept;
    int stream_transport(const uint8_t *p, size_t n) noexcept;
    int finish_streamed(sl_event *ev) noexcept;
    int on_plaintext(const uint8_t *body, size_t len, sl_event *ev) noexcept;
    int on_key_update(const uint8_t *body, size_t len) noexcept;
    int finish_handshake(sl_event *ev) noexcept;
    // Reserves a frame of body length n at the end of the output; returns where its body starts.
    uint8_t *append_frame(size_t n) noexcept;
    int seal(uint8_t type, const uint8_t *data, size_t len) noexcept;
    void trace(bool sent, int kind, const uint8_t *body, size_t len, uint64_t counter = 0, int type = 0,
               const uint8_t *content = nullptr, size_t content_len = 0) const noexcept {
        if (trace_ == nullptr) return;
        const sl_frame_info f{sent ? 1 : 0, kind, body, len, counter, type, content, content_len};
        trace_(trace_ud_, &f);
    }

    sl_role role_;
    State state_ = State::New;
    bool sent_close_ = false;
    bool sent_eof_ = false, peer_eof_ = false;  // EOF (PROTOCOL.md 9) sent / received
    bool key_confirmation_ = true;   // client: send the key-confirmation PING (PROTOCOL.md 4.1)
    bool confirmed_ = false;         // see peer_confirmed()
    bool await_confirm_pong_ = false;  // client: the next PONG answers the confirmation PING
    size_t max_message_ = SL_DEFAULT_MAX_MESSAGE;  // largest content received
    size_t max_send_ = SL_DEFAULT_MAX_MESSAGE;     // largest content sent

    Handshake hs_;
    const KeyRing *ring_ = nullptr;
    int key_index_ = -1;
    int mode_ = SL_MODE_PSK;
    unsigned accepted_ = 1u << SL_MODE_PSK, server_modes_ = 0;
    const uint8_t *static_ = nullptr;
    uint8_t expected_[kDhLen] = {}, server_static_[kDhLen] = {}, client_static_[kDhLen] = {};
    bool has_expected_ = false, has_server_static_ = false, has_client_static_ = false;
    uint8_t login_[1 + 32 + SL_MAX_PASSWORD] = {};  // mode 4's AUTH content, wiped once sent
    size_t login_len_ = 0;
    Secret<kKeyLen> psk_;  // until start(): then the handshake holds it
    uint8_t h_[kHashLen] = {};
    Aead send_, recv_;
    uint64_t send_n_ = 0, recv_n_ = 0;
    // The current direction keys (replaced by REKEY at each KEY_UPDATE) and the bytes protected
    // under the sending key so far (plaintext + 16 per frame).
    Secret<kKeyLen> send_key_, recv_key_;
    uint64_t rekey_bytes_ = SL_DEFAULT_REKEY_BYTES, sent_under_key_ = 0;
    uint64_t rekeys_sent_ = 0, rekeys_received_ = 0;

    // Input: the length prefix, then the body, gathered across feed() calls when a frame
    // arrives in pieces. A frame that arrives whole is processed in place, without a copy.
    uint8_t prefix_[SL_PREFIX_BYTES] = {};
    size_t prefix_have_ = 0;
    size_t body_len_ = 0, body_have_ = 0;
    Buffer body_;  // a handshake frame (or, when tracing, a transport frame) arriving in pieces
    // A transport frame arriving in pieces is decrypted as it arrives, into plain_; only its
    // IV and tag are kept aside. Nothing in plain_ is released before the tag has verified.
    uint8_t iv_[SL_IV_BYTES] = {}, tag_[SL_TAG_BYTES] = {};
    Buffer plain_;  // decrypted message; what sl_event.data points into

    Buffer out_;
    size_t out_pos_ = 0, out_len_ = 0;

    sl_trace_fn trace_ = nullptr;
    void *trace_ud_ = nullptr;
};

}  // namespace seclink::detail
