#include "crypto.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>

namespace seclink::detail {
namespace {

// Algorithms are fetched once per process (thread-safe static initialisation) and kept for the
// life of the process: fetching is the expensive part of using an EVP algorithm.
const EVP_CIPHER *aes256gcm() noexcept {
    static EVP_CIPHER *c = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    return c;
}
const EVP_MD *sha256_md() noexcept {
    static EVP_MD *md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md;
}
struct MacCtxFree {
    void operator()(EVP_MAC_CTX *c) const noexcept { EVP_MAC_CTX_free(c); }
};
// An HMAC context with SHA-256 bound, never keyed: the contexts that compute are copies of it.
const EVP_MAC_CTX *hmac_sha256_template() noexcept {
    static EVP_MAC_CTX *t = []() -> EVP_MAC_CTX * {
        EVP_MAC *mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
        EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : nullptr;
        EVP_MAC_free(mac);  // the context holds its own reference
        static char digest[] = "SHA256";
        OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                          OSSL_PARAM_construct_end()};
        if (c != nullptr && EVP_MAC_CTX_set_params(c, p) != 1) {
            EVP_MAC_CTX_free(c);
            c = nullptr;
        }
        return c;
    }();
    return t;
}
struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX *c) const noexcept { EVP_PKEY_CTX_free(c); }
};

bool fits_int(size_t n) noexcept { return n <= static_cast<size_t>(INT_MAX); }

// Up to this many bytes, seal() copies its two pieces together and encrypts them in one call.
constexpr size_t kGatherMax = 1024;

// A Noise nonce (PROTOCOL.md 4) is 4 zero bytes, GCM's "fixed" field, and an 8-byte counter.
constexpr size_t kCounterLen = 8;
constexpr uint8_t kZeroPrefix[kNonceLen - kCounterLen] = {};

// The GCM tag as a parameter, for EVP_CIPHER_CTX_get_params/set_params directly: the same as
// EVP_CTRL_GCM_GET_TAG/SET_TAG, which OpenSSL 3 turns into this array on every call.
std::array<OSSL_PARAM, 2> tag_param(uint8_t *tag) noexcept {
    return {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, kTagLen), OSSL_PARAM_construct_end()};
}

}  // namespace

void wipe(void *p, size_t n) noexcept {
    if (p != nullptr && n != 0) OPENSSL_cleanse(p, n);
}

void make_nonce(uint64_t n, uint8_t out[kNonceLen]) noexcept {
    out[0] = out[1] = out[2] = out[3] = 0;
    for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<uint8_t>(n >> (56 - 8 * i));
}

int Aead::init(const uint8_t key[kKeyLen], bool encrypt) noexcept {
    if (aes256gcm() == nullptr) return SL_ECRYPTO;
    if (!ctx_) {
        ctx_.reset(EVP_CIPHER_CTX_new());
        if (!ctx_) return SL_ENOMEM;
    }
    // The IV length is AES-GCM's default, 12 bytes, so no EVP_CTRL_GCM_SET_IVLEN is needed.
    // Every nonce is 4 zero bytes and a 64-bit counter (PROTOCOL.md 4). For opening, the zeros
    // are set here once as GCM's fixed field, and open() sets only the counter (the TLS 1.2
    // mechanism, EVP_CTRL_GCM_SET_IV_FIXED / SET_IV_INV): OpenSSL 3.0's EVP_DecryptInit_ex2
    // with an IV asks the provider for the IV length on every call, a third of open()'s cost
    // for a short message.
    // (Another IV, as a test vector may have, goes the long way and restores the zeros after.)
    zero_fixed_ = next_ready_ = false;
    if (EVP_CipherInit_ex2(ctx_.get(), aes256gcm(), key, nullptr, encrypt ? 1 : 0, nullptr) != 1 ||
        (!encrypt && !set_zero_fixed())) {
        ctx_.reset();
        return SL_ECRYPTO;
    }
    return SL_OK;
}

bool Aead::set_zero_fixed() noexcept {
    const OSSL_PARAM fixed[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_IV_FIXED,
                                                                  const_cast<uint8_t *>(kZeroPrefix), sizeof kZeroPrefix),
                                OSSL_PARAM_construct_end()};
    zero_fixed_ = EVP_CIPHER_CTX_set_params(ctx_.get(), fixed) == 1;
    return zero_fixed_;
}

// Sealing counts nonces the way TLS 1.2 does (EVP_CTRL_GCM_IV_GEN): GCM keeps the whole IV and
// increments its last 8 bytes, big-endian, each time it sets up the next one. The tag of one
// message and the set-up for the next come back from one get_params call after the message, so
// a sealer whose nonces count up (every Noise transport) never calls EVP_EncryptInit_ex2 again,
// which in OpenSSL 3.0 asks the provider for the IV length on every call. Any other IV first
// becomes the whole "fixed" field (length -1: the whole IV) and is set up on the spot.
bool Aead::start_iv(const uint8_t iv[kNonceLen]) noexcept {
    uint8_t inv[kCounterLen];
    if (EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_GCM_SET_IV_FIXED, -1, const_cast<uint8_t *>(iv)) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_GCM_IV_GEN, sizeof inv, inv) != 1 ||
        std::memcmp(inv, iv + kNonceLen - sizeof inv, sizeof inv) != 0)
        return false;
    std::memcpy(next_, iv, kNonceLen);
    return true;
}

int Aead::seal(const uint8_t iv[kNonceLen], const uint8_t *ad, size_t ad_len, const uint8_t *p1,
               size_t len1, const uint8_t *p2, size_t len2, uint8_t *out_ct,
               uint8_t *out_tag) noexcept {
    EVP_CIPHER_CTX *c = ctx_.get();
    int n = 0;
    if (c == nullptr || !fits_int(ad_len) || !fits_int(len1) || !fits_int(len2)) return SL_ECRYPTO;
    bool counting = next_ready_ && std::memcmp(iv, next_, kNonceLen) == 0;
    next_ready_ = false;  // until the nonce after this one is set up
    if (!counting) {
        ERR_set_mark();  // an OpenSSL without the TLS mechanism: the plain way, its errors dropped
        counting = start_iv(iv);
        ERR_pop_to_mark();
        if (!counting && EVP_EncryptInit_ex2(c, nullptr, nullptr, iv, nullptr) != 1) return SL_ECRYPTO;
    }
    if (ad_len != 0 && EVP_EncryptUpdate(c, nullptr, &n, ad, static_cast<int>(ad_len)) != 1)
        return SL_ECRYPTO;
    if (len1 + len2 <= kGatherMax) {
        // A short message: gathered into out_ct and encrypted in place in one call (each call
        // into EVP costs about as much as encrypting a few hundred bytes).
        if (len1 != 0) std::memcpy(out_ct, p1, len1);
        if (len2 != 0) std::memcpy(out_ct + len1, p2, len2);
        if (len1 + len2 != 0 && EVP_EncryptUpdate(c, out_ct, &n, out_ct, static_cast<int>(len1 + len2)) != 1)
            return SL_ECRYPTO;
    } else {
        if (len1 != 0 && EVP_EncryptUpdate(c, out_ct, &n, p1, static_cast<int>(len1)) != 1)
            return SL_ECRYPTO;
        if (len2 != 0 && EVP_EncryptUpdate(c, out_ct + len1, &n, p2, static_cast<int>(len2)) != 1)
            return SL_ECRYPTO;
    }
    if (EVP_EncryptFinal_ex(c, out_ct + len1 + len2, &n) != 1) return SL_ECRYPTO;
    if (!counting) return EVP_CIPHER_CTX_get_params(c, tag_param(out_tag).data()) == 1 ? SL_OK : SL_ECRYPTO;
    // This message's tag, and GCM set up for the next nonce (checked against our own count).
    uint8_t inv[kCounterLen];
    OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, out_tag, kTagLen),
                           OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_GET_IV_GEN, inv, sizeof inv),
                           OSSL_PARAM_construct_end()};
    if (EVP_CIPHER_CTX_get_params(c, params) != 1) return SL_ECRYPTO;
    for (size_t i = kNonceLen; i-- > kNonceLen - kCounterLen && ++next_[i] == 0;) {
    }
    next_ready_ = std::memcmp(inv, next_ + kNonceLen - sizeof inv, sizeof inv) == 0;
    return SL_OK;
}

bool Aead::open(const uint8_t iv[kNonceLen], const uint8_t *ad, size_t ad_len, const uint8_t *ct,
                size_t len, const uint8_t tag[kTagLen], uint8_t *out) noexcept {
    EVP_CIPHER_CTX *c = ctx_.get();
    int n = 0;
    if (c == nullptr || !fits_int(ad_len) || !fits_int(len)) return false;
    const bool noise_nonce = std::memcmp(iv, kZeroPrefix, sizeof kZeroPrefix) == 0;  // (the nonce is public)
    bool ok;
    if (noise_nonce && (zero_fixed_ || set_zero_fixed())) {
        // The tag, and the counter after the fixed zeros, in one call (see init()).
        const OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, const_cast<uint8_t *>(tag), kTagLen),
            OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_SET_IV_INV,
                                              const_cast<uint8_t *>(iv) + sizeof kZeroPrefix, kCounterLen),
            OSSL_PARAM_construct_end()};
        ok = EVP_CIPHER_CTX_set_params(c, params) == 1;
    } else {
        zero_fixed_ = false;  // the whole IV replaces the fixed zeros
        ok = EVP_DecryptInit_ex2(c, nullptr, nullptr, iv, nullptr) == 1 &&
             EVP_CIPHER_CTX_set_params(c, tag_param(const_cast<uint8_t *>(tag)).data()) == 1;
    }
    ok = ok && (ad_len == 0 || EVP_DecryptUpdate(c, nullptr, &n, ad, static_cast<int>(ad_len)) == 1) &&
         (len == 0 || EVP_DecryptUpdate(c, out, &n, ct, static_cast<int>(len)) == 1) &&
         EVP_DecryptFinal_ex(c, out + len, &n) == 1;  // verifies the tag
    if (!ok) wipe(out, len);
    return ok;
}

bool Aead::open_begin(const uint8_t iv[kNonceLen]) noexcept {
    zero_fixed_ = false;  // the whole IV replaces the fixed zeros
    return ctx_ && EVP_DecryptInit_ex2(ctx_.get(), nullptr, nullptr, iv, nullptr) == 1;
}

bool Aead::open_update(const uint8_t *ct, size_t len, uint8_t *out) noexcept {
    int n = 0;
    // GCM is a stream mode: every byte in gives a byte out, whatever the chunking.
    return len == 0 || (fits_int(len) && EVP_DecryptUpdate(ctx_.get(), out, &n, ct, static_cast<int>(len)) == 1 &&
                        static_cast<size_t>(n) == len);
}

bool Aead::open_finish(const uint8_t tag[kTagLen]) noexcept {
    uint8_t none[16];
    int n = 0;
    return EVP_CIPHER_CTX_set_params(ctx_.get(), tag_param(const_cast<uint8_t *>(tag)).data()) == 1 &&
           EVP_DecryptFinal_ex(ctx_.get(), none, &n) == 1;
}

int noise_rekey(uint8_t k[kKeyLen]) noexcept {
    static const uint8_t zeros[kKeyLen] = {};
    uint8_t iv[kNonceLen], out[kKeyLen], tag[kTagLen];
    make_nonce(UINT64_MAX, iv);
    Aead a;
    int rc = a.init(k, true);
    if (rc == SL_OK) rc = a.seal(iv, nullptr, 0, zeros, sizeof zeros, nullptr, 0, out, tag);
    if (rc == SL_OK) std::memcpy(k, out, kKeyLen);
    wipe(out, sizeof out);
    return rc;
}

int sha256(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
           uint8_t out[kHashLen]) noexcept {
    const EVP_MD *md = sha256_md();
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int n = 0;
    bool ok = md != nullptr && c != nullptr && EVP_DigestInit_ex2(c, md, nullptr) == 1 &&
              EVP_DigestUpdate(c, a, a_len) == 1 && (b_len == 0 || EVP_DigestUpdate(c, b, b_len) == 1) &&
              EVP_DigestFinal_ex(c, out, &n) == 1 && n == kHashLen;
    EVP_MD_CTX_free(c);
    return ok ? SL_OK : SL_ECRYPTO;
}

// RFC 5869 on HMAC-SHA-256, written out because OpenSSL 3.0's HKDF provider fetches HMAC and
// SHA-256 by name on every derive (a lock and a name lookup each, about 10% of a server's CPU per
// new session). Each call starts from the template context, so nothing is fetched here.
int hkdf_sha256(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, size_t ikm_len, const uint8_t *info,
                size_t info_len, uint8_t *out, size_t out_len) noexcept {
    const EVP_MAC_CTX *tmpl = hmac_sha256_template();
    if (tmpl == nullptr || out_len == 0 || out_len > 255 * kHashLen) return SL_ECRYPTO;  // RFC 5869 2.3
    std::unique_ptr<EVP_MAC_CTX, MacCtxFree> c(EVP_MAC_CTX_dup(tmpl));
    if (!c) return SL_ENOMEM;
    static const uint8_t empty = 0;
    auto bytes = [](const uint8_t *p, size_t n) { return n ? p : &empty; };  // a key may be empty, not NULL
    uint8_t prk[kHashLen], t[kHashLen];
    size_t n = 0;
    // Extract: PRK = HMAC(salt, IKM).
    bool ok = EVP_MAC_init(c.get(), bytes(salt, salt_len), salt_len, nullptr) == 1 &&
              (ikm_len == 0 || EVP_MAC_update(c.get(), ikm, ikm_len) == 1) &&
              EVP_MAC_final(c.get(), prk, &n, sizeof prk) == 1 && n == kHashLen;
    // Expand: T(i) = HMAC(PRK, T(i-1) || info || i), T(0) empty; out = T(1) || T(2) || ...
    for (size_t done = 0, i = 1; ok && done < out_len; ++i) {
        const uint8_t counter = static_cast<uint8_t>(i);
        // The first block keys the context with PRK; the next ones re-initialise it with no
        // key, which restarts HMAC from the keyed state kept inside (no new key schedule).
        ok = (i == 1 ? EVP_MAC_init(c.get(), prk, sizeof prk, nullptr) : EVP_MAC_init(c.get(), nullptr, 0, nullptr)) == 1 &&
             (i == 1 || EVP_MAC_update(c.get(), t, sizeof t) == 1) &&
             (info_len == 0 || EVP_MAC_update(c.get(), info, info_len) == 1) &&
             EVP_MAC_update(c.get(), &counter, 1) == 1 && EVP_MAC_final(c.get(), t, &n, sizeof t) == 1 &&
             n == kHashLen;
        if (ok) {
            const size_t take = std::min(out_len - done, sizeof t);
            std::memcpy(out + done, t, take);
            done += take;
        }
    }
    wipe(prk, sizeof prk);
    wipe(t, sizeof t);
    if (!ok) wipe(out, out_len);
    return ok ? SL_OK : SL_ECRYPTO;
}

int hkdf(const uint8_t ck[kHashLen], const uint8_t *ikm, size_t ikm_len, uint8_t *out,
         size_t n) noexcept {
    if (n != 2 && n != 3) return SL_ECRYPTO;
    return hkdf_sha256(ck, kHashLen, ikm, ikm_len, nullptr, 0, out, n * kHashLen);
}

int X25519::generate() noexcept {
    // One key-generation context per thread, made once: making it looks the key type up by name
    // (a fetch). Each EVP_PKEY_keygen on it draws a new private key.
    thread_local std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> c;
    if (!c) {
        c.reset(EVP_PKEY_CTX_new_from_name(nullptr, "X25519", nullptr));
        if (!c || EVP_PKEY_keygen_init(c.get()) != 1) {
            c.reset();
            return SL_ECRYPTO;
        }
    }
    EVP_PKEY *k = nullptr;
    if (EVP_PKEY_keygen(c.get(), &k) != 1) return SL_ECRYPTO;
    key_.reset(k);
    return load_public();
}

int X25519::set_private(const uint8_t priv[kDhLen]) noexcept {
    key_.reset(EVP_PKEY_new_raw_private_key_ex(nullptr, "X25519", nullptr, priv, kDhLen));
    if (!key_) return SL_ECRYPTO;
    return load_public();
}

int X25519::load_public() noexcept {
    size_t len = kDhLen;
    if (EVP_PKEY_get_raw_public_key(key_.get(), pub_, &len) != 1 || len != kDhLen) {
        key_.reset();
        return SL_ECRYPTO;
    }
    return SL_OK;
}

int X25519::derive(const uint8_t peer_pub[kDhLen], uint8_t out[kDhLen]) const noexcept {
    static const uint8_t zeros[kDhLen] = {};
    if (!key_) return SL_ECRYPTO;
    // The peer's key goes into one EVP_PKEY per thread, set anew each time: making an EVP_PKEY
    // costs OpenSSL 3.0 a fetch and a walk over every algorithm name, a tenth of a server's
    // handshake. The derive context below holds it only until this function returns.
    thread_local PkeyPtr peer;
    if (!peer) {
        peer.reset(EVP_PKEY_new_raw_public_key_ex(nullptr, "X25519", nullptr, peer_pub, kDhLen));
        if (!peer) return SL_ECRYPTO;
    } else if (EVP_PKEY_set1_encoded_public_key(peer.get(), peer_pub, kDhLen) != 1) {
        return SL_ECRYPTO;
    }
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> c(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
    size_t len = kDhLen;
    if (!c || EVP_PKEY_derive_init(c.get()) != 1 || EVP_PKEY_derive_set_peer_ex(c.get(), peer.get(), 0) != 1)
        return SL_ECRYPTO;
    // OpenSSL refuses to return the all-zero secret of a low-order point, so a derive failure
    // here is a weak key; the explicit comparison keeps that true whatever the provider does.
    if (EVP_PKEY_derive(c.get(), out, &len) != 1 || len != kDhLen) {
        wipe(out, kDhLen);
        return SL_EWEAK_KEY;
    }
    if (CRYPTO_memcmp(out, zeros, kDhLen) == 0) return SL_EWEAK_KEY;
    return SL_OK;
}

int random_bytes(uint8_t *buf, size_t n) noexcept {
    return RAND_bytes(buf, static_cast<int>(n)) == 1 ? SL_OK : SL_ECRYPTO;
}

}  // namespace seclink::detail
