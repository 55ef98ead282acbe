// noise.hpp - Noise_NNpsk0_25519_AESGCM_SHA256 (Noise revision 34), as restated in
// docs/PROTOCOL.md section 3. Only the pieces seclink/1 uses; payloads may be non-empty so
// the public Noise test vectors can be reproduced.
#pragma once

#include <cstddef>
#include <cstdint>

#include "crypto.hpp"
#include "secure_mem.hpp"

namespace seclink::detail {

// Noise CipherState during the handshake: key k (optional) and nonce n.
class HandshakeCipher {
public:
    int set_key(const uint8_t k[kKeyLen]) noexcept;
    bool has_key() const noexcept { return has_key_; }
    // out receives len + 16 bytes. SL_OK, SL_ECRYPTO.
    int encrypt(const uint8_t *ad, size_t ad_len, const uint8_t *p, size_t len, uint8_t *out) noexcept;
    // out receives len - 16 bytes. SL_OK, SL_EHANDSHAKE_AUTH.
    int decrypt(const uint8_t *ad, size_t ad_len, const uint8_t *c, size_t len, uint8_t *out) noexcept;
    void clear() noexcept;

private:
    Aead enc_, dec_;
    bool has_key_ = false;
    uint64_t n_ = 0;
};

// Noise SymmetricState: chaining key ck, handshake hash h, and the handshake cipher.
class SymmetricState {
public:
    ~SymmetricState() { clear(); }
    int init(const char *protocol_name) noexcept;  // name of at most 32 bytes
    int mix_hash(const uint8_t *data, size_t len) noexcept;
    int mix_key(const uint8_t *ikm, size_t len) noexcept;
    int mix_key_and_hash(const uint8_t *ikm, size_t len) noexcept;
    int encrypt_and_hash(const uint8_t *p, size_t len, uint8_t *out, size_t *out_len) noexcept;
    int decrypt_and_hash(const uint8_t *c, size_t len, uint8_t *out, size_t *out_len) noexcept;
    int split(uint8_t k1[kKeyLen], uint8_t k2[kKeyLen]) noexcept;
    const uint8_t *hash() const noexcept { return h_; }
    void clear() noexcept;
    // ck and h, to try several PSKs from the same state (PROTOCOL.md 12, mode 3); the cipher is
    // not kept: MixKeyAndHash replaces its key.
    void save(uint8_t ck[kHashLen], uint8_t h[kHashLen]) const noexcept;
    void restore(const uint8_t ck[kHashLen], const uint8_t h[kHashLen]) noexcept;

private:
    Secret<kHashLen> ck_;
    uint8_t h_[kHashLen] = {};
    HandshakeCipher cipher_;
};

// NNpsk0:  -> psk, e   <- e, ee                  (mode 1, PROTOCOL.md 3)
// NXpsk2:  -> e        <- e, ee, s, es, psk      (mode 2, server identity, PROTOCOL.md 14)
// XXpsk3:  -> e        <- e, ee, s, es   -> s, se, psk   (mode 3, key users, PROTOCOL.md 15)
class Handshake {
public:
    enum class Pattern { NNpsk0, NXpsk2, XXpsk3 };
    static constexpr const char *kProtocolName = "Noise_NNpsk0_25519_AESGCM_SHA256";
    static constexpr const char *kProtocolNameNX = "Noise_NXpsk2_25519_AESGCM_SHA256";
    static constexpr const char *kProtocolNameXX = "Noise_XXpsk3_25519_AESGCM_SHA256";
    static constexpr size_t kMaxPayload = 1024;

    // SL_OK, SL_ECRYPTO.
    int init(bool initiator, const uint8_t *prologue, size_t prologue_len,
             const uint8_t psk[kKeyLen], Pattern pattern = Pattern::NNpsk0) noexcept;
    // NXpsk2 / XXpsk3: this side's static private key (responder; XXpsk3 initiator too).
    int set_static(const uint8_t priv[kDhLen]) noexcept { return s_.set_private(priv); }
    // The peer's static public key once its message carrying it verified (else zeros).
    const uint8_t *remote_static() const noexcept { return rs_; }
    // Use this private key instead of a fresh one (test vectors only). Before the first message.
    int set_ephemeral(const uint8_t priv[kDhLen]) noexcept { return e_.set_private(priv); }

    // Writes the next handshake message (e.pub || encrypted payload) into out (capacity
    // 32 + len + 16). SL_OK, SL_ESTATE, SL_EWEAK_KEY, SL_ECRYPTO, SL_EINVAL (payload too large).
    int write_message(const uint8_t *payload, size_t len, uint8_t *out, size_t *out_len) noexcept;
    // Reads the next handshake message; the payload goes to payload_out (capacity len - 48).
    // SL_OK, SL_ESTATE, SL_EFRAME_TOO_SHORT, SL_EWEAK_KEY, SL_EHANDSHAKE_AUTH, SL_ECRYPTO.
    int read_message(const uint8_t *msg, size_t len, uint8_t *payload_out, size_t *payload_len) noexcept;
    // XXpsk3's message 3 with any of n PSKs (PROTOCOL.md 12): `s, se` once, then `psk` and the
    // payload with each key in turn from that state; *which is the first whose tag verifies.
    // As read_message; SL_EHANDSHAKE_AUTH if none does.
    int read_message_any_key(const uint8_t *msg, size_t len, const uint8_t *const *psks, size_t n,
                             uint8_t *payload_out, size_t *payload_len, size_t *which) noexcept;

    bool done() const noexcept { return step_ == (pattern_ == Pattern::XXpsk3 ? 3 : 2); }
    // After done(): the two transport keys (initiator->responder, responder->initiator) and the
    // handshake hash; erases the rest of the handshake state.
    int split(uint8_t k1[kKeyLen], uint8_t k2[kKeyLen], uint8_t h[kHashLen]) noexcept;
    void clear() noexcept;
    ~Handshake() { clear(); }

private:
    int read_tokens(const uint8_t *msg, size_t len, size_t *pos) noexcept;  // all but psk and payload
    bool my_turn() const noexcept { return (step_ % 2 == 0) == initiator_; }
    int mix_ee() noexcept;  // MixKey(DH(e, re)): SL_EWEAK_KEY for a low-order re
    int mix_dh(const X25519 &mine, const uint8_t theirs[kDhLen]) noexcept;
    SymmetricState ss_;
    Pattern pattern_ = Pattern::NNpsk0;
    X25519 e_, s_;
    uint8_t re_[kDhLen] = {}, rs_[kDhLen] = {};
    Secret<kKeyLen> psk_;
    bool initiator_ = false;
    int step_ = 0;  // messages processed: 0, 1, 2
};

}  // namespace seclink::detail
