// crypto.hpp - the OpenSSL 3 primitives seclink/1 needs, behind small RAII types.
// Every EVP return is checked; a failure surfaces as SL_ECRYPTO (or a protocol error where the
// failure has a protocol meaning: a tag that does not verify, a low-order X25519 key).
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "seclink/seclink.h"

namespace seclink::detail {

constexpr size_t kKeyLen = 32;
constexpr size_t kHashLen = 32;
constexpr size_t kNonceLen = 12;
constexpr size_t kTagLen = 16;
constexpr size_t kDhLen = 32;

struct EvpCipherCtxFree {
    void operator()(EVP_CIPHER_CTX *c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
struct EvpPkeyFree {
    void operator()(EVP_PKEY *k) const noexcept { EVP_PKEY_free(k); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, EvpCipherCtxFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;

// Wipes `n` bytes at `p` in a way the compiler may not optimise away.
void wipe(void *p, size_t n) noexcept;

// The 12-byte Noise AESGCM nonce: 4 zero bytes || u64be(n).
void make_nonce(uint64_t n, uint8_t out[kNonceLen]) noexcept;

// AES-256-GCM with one key, one direction. The cipher is fetched once per process and the
// context keeps its key schedule, so each message only sets the IV.
class Aead {
public:
    // Returns SL_OK, SL_ENOMEM or SL_ECRYPTO.
    int init(const uint8_t key[kKeyLen], bool encrypt) noexcept;
    bool ready() const noexcept { return ctx_ != nullptr; }
    void reset() noexcept { ctx_.reset(); }

    // out_ct receives len1 + len2 bytes (the encryption of p1 || p2), out_tag 16 bytes.
    // out_ct may not overlap the inputs. Returns SL_OK or SL_ECRYPTO.
    int seal(const uint8_t iv[kNonceLen], const uint8_t *ad, size_t ad_len, const uint8_t *p1,
             size_t len1, const uint8_t *p2, size_t len2, uint8_t *out_ct,
             uint8_t *out_tag) noexcept;

    // Decrypts ct (len bytes) into out, then verifies tag. Returns true only if the tag verified;
    // on false the len bytes at out have been wiped and must not be used.
    bool open(const uint8_t iv[kNonceLen], const uint8_t *ad, size_t ad_len, const uint8_t *ct,
              size_t len, const uint8_t tag[kTagLen], uint8_t *out) noexcept;

    // The same as open(), in pieces, for ciphertext that arrives in pieces (no associated data).
    // The output of open_update() is unauthenticated until open_finish() returns true; the
    // caller must not release it before, and must wipe it if it returns false.
    bool open_begin(const uint8_t iv[kNonceLen]) noexcept;
    bool open_update(const uint8_t *ct, size_t len, uint8_t *out) noexcept;
    bool open_finish(const uint8_t tag[kTagLen]) noexcept;

private:
    bool set_zero_fixed() noexcept;
    bool start_iv(const uint8_t iv[kNonceLen]) noexcept;
    CipherCtxPtr ctx_;
    bool zero_fixed_ = false;  // opening: GCM's fixed IV field holds the 4 zero bytes of a Noise nonce
    bool next_ready_ = false;  // sealing: GCM is set up for the nonce next_
    uint8_t next_[kNonceLen] = {};
};

// Noise REKEY(k) in place (PROTOCOL.md 13): the first 32 bytes of ENCRYPT(k, 2^64-1, empty,
// 32 zero bytes). Returns SL_OK, SL_ENOMEM or SL_ECRYPTO.
int noise_rekey(uint8_t k[kKeyLen]) noexcept;

// SHA-256 of a || b. Returns SL_OK or SL_ECRYPTO.
int sha256(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
           uint8_t out[kHashLen]) noexcept;

// RFC 5869 HKDF-SHA-256 (extract, then expand to out_len bytes, at most 255 * 32). Returns SL_OK
// or SL_ECRYPTO.
int hkdf_sha256(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, size_t ikm_len, const uint8_t *info,
                size_t info_len, uint8_t *out, size_t out_len) noexcept;

// Noise HKDF: RFC 5869 HKDF-SHA-256, salt = ck, IKM = ikm, empty info; writes n * 32 bytes
// (n = 2 or 3). Returns SL_OK or SL_ECRYPTO.
int hkdf(const uint8_t ck[kHashLen], const uint8_t *ikm, size_t ikm_len, uint8_t *out,
         size_t n) noexcept;

// An X25519 key pair.
class X25519 {
public:
    int generate() noexcept;                             // SL_OK, SL_ECRYPTO
    int set_private(const uint8_t priv[kDhLen]) noexcept; // SL_OK, SL_ECRYPTO
    bool has_key() const noexcept { return key_ != nullptr; }
    const uint8_t *public_key() const noexcept { return pub_; }
    // DH with the peer's public key. SL_EWEAK_KEY if the result would be all zeros (a low-order
    // peer key, which OpenSSL also refuses), SL_ECRYPTO on other failures.
    int derive(const uint8_t peer_pub[kDhLen], uint8_t out[kDhLen]) const noexcept;
    void clear() noexcept { key_.reset(); }

private:
    int load_public() noexcept;
    PkeyPtr key_;
    uint8_t pub_[kDhLen] = {};
};

// Fills buf with n bytes from OpenSSL's CSPRNG. Returns SL_OK or SL_ECRYPTO.
int random_bytes(uint8_t *buf, size_t n) noexcept;

}  // namespace seclink::detail
