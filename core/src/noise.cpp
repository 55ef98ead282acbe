#include "noise.hpp"

#include <cstring>

namespace seclink::detail {

int HandshakeCipher::set_key(const uint8_t k[kKeyLen]) noexcept {
    int rc = enc_.init(k, true);
    if (rc == SL_OK) rc = dec_.init(k, false);
    has_key_ = rc == SL_OK;
    n_ = 0;
    return rc;
}

int HandshakeCipher::encrypt(const uint8_t *ad, size_t ad_len, const uint8_t *p, size_t len,
                             uint8_t *out) noexcept {
    uint8_t iv[kNonceLen];
    make_nonce(n_, iv);
    int rc = enc_.seal(iv, ad, ad_len, p, len, nullptr, 0, out, out + len);
    if (rc == SL_OK) ++n_;
    return rc;
}

int HandshakeCipher::decrypt(const uint8_t *ad, size_t ad_len, const uint8_t *c, size_t len,
                             uint8_t *out) noexcept {
    uint8_t iv[kNonceLen];
    if (len < kTagLen) return SL_EHANDSHAKE_AUTH;
    make_nonce(n_, iv);
    if (!dec_.open(iv, ad, ad_len, c, len - kTagLen, c + len - kTagLen, out)) return SL_EHANDSHAKE_AUTH;
    ++n_;
    return SL_OK;
}

void HandshakeCipher::clear() noexcept {
    enc_.reset();  // EVP_CIPHER_CTX_free cleanses the key schedule
    dec_.reset();
    has_key_ = false;
    n_ = 0;
}

int SymmetricState::init(const char *protocol_name) noexcept {
    size_t len = std::strlen(protocol_name);
    if (len <= kHashLen) {
        std::memset(h_, 0, kHashLen);
        std::memcpy(h_, protocol_name, len);
    } else if (sha256(reinterpret_cast<const uint8_t *>(protocol_name), len, nullptr, 0, h_) != SL_OK) {
        return SL_ECRYPTO;
    }
    std::memcpy(ck_, h_, kHashLen);
    cipher_.clear();
    return SL_OK;
}

int SymmetricState::mix_hash(const uint8_t *data, size_t len) noexcept {
    return sha256(h_, kHashLen, data, len, h_);
}

int SymmetricState::mix_key(const uint8_t *ikm, size_t len) noexcept {
    uint8_t out[2 * kHashLen];
    int rc = hkdf(ck_, ikm, len, out, 2);
    if (rc == SL_OK) {
        std::memcpy(ck_, out, kHashLen);
        rc = cipher_.set_key(out + kHashLen);
    }
    wipe(out, sizeof out);
    return rc;
}

int SymmetricState::mix_key_and_hash(const uint8_t *ikm, size_t len) noexcept {
    uint8_t out[3 * kHashLen];
    int rc = hkdf(ck_, ikm, len, out, 3);
    if (rc == SL_OK) {
        std::memcpy(ck_, out, kHashLen);
        rc = mix_hash(out + kHashLen, kHashLen);
    }
    if (rc == SL_OK) rc = cipher_.set_key(out + 2 * kHashLen);
    wipe(out, sizeof out);
    return rc;
}

int SymmetricState::encrypt_and_hash(const uint8_t *p, size_t len, uint8_t *out,
                                     size_t *out_len) noexcept {
    int rc = SL_OK;
    if (cipher_.has_key()) {
        rc = cipher_.encrypt(h_, kHashLen, p, len, out);
        *out_len = len + kTagLen;
    } else {
        std::memmove(out, p, len);
        *out_len = len;
    }
    return rc == SL_OK ? mix_hash(out, *out_len) : rc;
}

int SymmetricState::decrypt_and_hash(const uint8_t *c, size_t len, uint8_t *out,
                                     size_t *out_len) noexcept {
    int rc = SL_OK;
    if (cipher_.has_key()) {
        rc = cipher_.decrypt(h_, kHashLen, c, len, out);
        *out_len = len >= kTagLen ? len - kTagLen : 0;
    } else {
        std::memmove(out, c, len);
        *out_len = len;
    }
    // h covers the ciphertext, which is still in c (out never overlaps it here).
    return rc == SL_OK ? mix_hash(c, len) : rc;
}

int SymmetricState::split(uint8_t k1[kKeyLen], uint8_t k2[kKeyLen]) noexcept {
    uint8_t out[2 * kHashLen];
    int rc = hkdf(ck_, nullptr, 0, out, 2);
    if (rc == SL_OK) {
        std::memcpy(k1, out, kKeyLen);
        std::memcpy(k2, out + kHashLen, kKeyLen);
    }
    wipe(out, sizeof out);
    return rc;
}

void SymmetricState::clear() noexcept {
    wipe(ck_, kHashLen);
    cipher_.clear();
}

void SymmetricState::save(uint8_t ck[kHashLen], uint8_t h[kHashLen]) const noexcept {
    std::memcpy(ck, ck_, kHashLen);
    std::memcpy(h, h_, kHashLen);
}

void SymmetricState::restore(const uint8_t ck[kHashLen], const uint8_t h[kHashLen]) noexcept {
    std::memcpy(ck_, ck, kHashLen);
    std::memcpy(h_, h, kHashLen);
}

int Handshake::init(bool initiator, const uint8_t *prologue, size_t prologue_len,
                    const uint8_t psk[kKeyLen], Pattern pattern) noexcept {
    initiator_ = initiator;
    step_ = 0;
    pattern_ = pattern;
    std::memcpy(psk_, psk, kKeyLen);
    int rc = ss_.init(pattern == Pattern::NXpsk2   ? kProtocolNameNX
                      : pattern == Pattern::XXpsk3 ? kProtocolNameXX
                                                   : kProtocolName);
    return rc == SL_OK ? ss_.mix_hash(prologue, prologue_len) : rc;
}

int Handshake::mix_dh(const X25519 &mine, const uint8_t theirs[kDhLen]) noexcept {
    uint8_t dh[kDhLen];
    int rc = mine.derive(theirs, dh);
    if (rc == SL_OK) rc = ss_.mix_key(dh, kDhLen);
    wipe(dh, sizeof dh);
    return rc;
}

int Handshake::mix_ee() noexcept { return mix_dh(e_, re_); }

// The tokens of each pattern (noise.hpp). Every `e` is followed by MixKey(e.pub) (a PSK is in
// every pattern); message 1 of NNpsk0 starts with `psk`.
int Handshake::write_message(const uint8_t *payload, size_t len, uint8_t *out,
                             size_t *out_len) noexcept {
    if (done() || !my_turn()) return SL_ESTATE;
    if (len > kMaxPayload) return SL_EINVAL;
    int rc = SL_OK;
    const bool nn = pattern_ == Pattern::NNpsk0, xx = pattern_ == Pattern::XXpsk3;
    size_t pos = 0, c_len = 0;
    if (step_ == 0 && nn && (rc = ss_.mix_key_and_hash(psk_, kKeyLen)) != SL_OK) return rc;  // psk
    if (step_ < 2) {
        if (!e_.has_key() && (rc = e_.generate()) != SL_OK) return rc;                        // e
        std::memcpy(out, e_.public_key(), kDhLen);
        if ((rc = ss_.mix_hash(out, kDhLen)) != SL_OK || (rc = ss_.mix_key(out, kDhLen)) != SL_OK) return rc;
        pos = kDhLen;
    }
    if (step_ == 1 && (rc = mix_ee()) != SL_OK) return rc;  // ee
    if ((step_ == 1 && !nn) || step_ == 2) {                // s, then es (responder) or se (initiator)
        if (!s_.has_key()) return SL_ESTATE;
        if ((rc = ss_.encrypt_and_hash(s_.public_key(), kDhLen, out + pos, &c_len)) != SL_OK) return rc;
        pos += c_len;
        if ((rc = mix_dh(s_, re_)) != SL_OK) return rc;
    }
    if ((step_ == 1 && !nn && !xx) || step_ == 2) {          // psk (NXpsk2's message 2, XXpsk3's 3)
        if ((rc = ss_.mix_key_and_hash(psk_, kKeyLen)) != SL_OK) return rc;
    }
    if ((rc = ss_.encrypt_and_hash(payload, len, out + pos, &c_len)) != SL_OK) return rc;
    *out_len = pos + c_len;
    ++step_;
    return SL_OK;
}

int Handshake::read_message(const uint8_t *msg, size_t len, uint8_t *payload_out,
                            size_t *payload_len) noexcept {
    size_t pos = 0;
    int rc = read_tokens(msg, len, &pos);
    if (rc != SL_OK) return rc;
    const bool nn = pattern_ == Pattern::NNpsk0, xx = pattern_ == Pattern::XXpsk3;
    if ((step_ == 1 && !nn && !xx) || step_ == 2) {  // psk
        if ((rc = ss_.mix_key_and_hash(psk_, kKeyLen)) != SL_OK) return rc;
    }
    if ((rc = ss_.decrypt_and_hash(msg + pos, len - pos, payload_out, payload_len)) != SL_OK) return rc;
    ++step_;
    return SL_OK;
}

int Handshake::read_message_any_key(const uint8_t *msg, size_t len, const uint8_t *const *psks, size_t n,
                                    uint8_t *payload_out, size_t *payload_len, size_t *which) noexcept {
    if (pattern_ != Pattern::XXpsk3 || step_ != 2) return SL_ESTATE;
    size_t pos = 0;
    int rc = read_tokens(msg, len, &pos);
    if (rc != SL_OK) return rc;
    uint8_t ck[kHashLen], h[kHashLen];
    ss_.save(ck, h);
    rc = SL_EHANDSHAKE_AUTH;
    for (size_t i = 0; i < n && rc == SL_EHANDSHAKE_AUTH; ++i) {
        ss_.restore(ck, h);
        rc = ss_.mix_key_and_hash(psks[i], kKeyLen);  // psk
        if (rc == SL_OK) rc = ss_.decrypt_and_hash(msg + pos, len - pos, payload_out, payload_len);
        if (rc == SL_OK) *which = i;
    }
    wipe(ck, sizeof ck);
    if (rc == SL_OK) ++step_;
    return rc;
}

// The tokens of the next message before `psk` and the payload; *pos: where the payload starts.
int Handshake::read_tokens(const uint8_t *msg, size_t len, size_t *pos_out) noexcept {
    if (done() || my_turn()) return SL_ESTATE;
    const bool nn = pattern_ == Pattern::NNpsk0;
    const bool has_e = step_ < 2, has_s = (step_ == 1 && !nn) || step_ == 2;
    const size_t need = (has_e ? kDhLen : 0) + (has_s ? kDhLen + kTagLen : 0) + kTagLen;
    if (len < kDhLen + kTagLen) return SL_EFRAME_TOO_SHORT;
    if (len < need) return SL_EHANDSHAKE_AUTH;  // a message without its encrypted static key: a forgery
    int rc = SL_OK;
    size_t pos = 0;
    if (step_ == 0 && nn && (rc = ss_.mix_key_and_hash(psk_, kKeyLen)) != SL_OK) return rc;  // psk
    if (has_e) {                                                                               // e
        std::memcpy(re_, msg, kDhLen);
        if ((rc = ss_.mix_hash(re_, kDhLen)) != SL_OK || (rc = ss_.mix_key(re_, kDhLen)) != SL_OK) return rc;
        pos = kDhLen;
    }
    if (step_ == 1 && (rc = mix_ee()) != SL_OK) return rc;  // ee
    if (has_s) {  // s, then es (initiator) or se (responder): DH(e, rs) on this side either way
        size_t n = 0;
        if ((rc = ss_.decrypt_and_hash(msg + pos, kDhLen + kTagLen, rs_, &n)) != SL_OK) return rc;
        pos += kDhLen + kTagLen;
        if ((rc = mix_dh(e_, rs_)) != SL_OK) return rc;
    }
    *pos_out = pos;
    return SL_OK;
}

int Handshake::split(uint8_t k1[kKeyLen], uint8_t k2[kKeyLen], uint8_t h[kHashLen]) noexcept {
    if (!done()) return SL_ESTATE;
    int rc = ss_.split(k1, k2);
    std::memcpy(h, ss_.hash(), kHashLen);
    clear();
    return rc;
}

void Handshake::clear() noexcept {
    ss_.clear();
    e_.clear();
    s_.clear();
    wipe(psk_, kKeyLen);
    wipe(re_, sizeof re_);
}

}  // namespace seclink::detail
