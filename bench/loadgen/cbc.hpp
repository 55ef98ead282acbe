// loadgen: the cipher of baseline (b), AES-256-CBC + HMAC-SHA-256, encrypt-then-MAC.
// Must match bench/baselines/cbc_threaded_server.py:
//   enc_key || mac_key = HKDF-SHA-256(ikm = PSK, salt = kCbcSalt, info = kCbcInfo, 64 bytes)
//   frame = u32be(N) || iv (16, random) || AES-256-CBC(enc_key, iv, PKCS#7(plaintext))
//           || HMAC-SHA-256(mac_key, iv || ciphertext)         with N = 16 + len(ciphertext) + 32
// The same keys serve both directions (the old design did; it is a baseline, not a proposal).
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "seclink/seclink.h"

namespace loadgen {

constexpr size_t kCbcIv = 16, kCbcBlock = 16, kCbcTag = 32;

inline size_t cbc_body_len(size_t plaintext) { return kCbcIv + (plaintext / kCbcBlock + 1) * kCbcBlock + kCbcTag; }

void derive_cbc_keys(const uint8_t psk[SL_KEY_BYTES], uint8_t enc[32], uint8_t mac[32]);

// One per thread (OpenSSL contexts are not shared between threads).
class CbcCipher {
public:
    CbcCipher(const uint8_t enc_key[32], const uint8_t mac_key[32]);
    ~CbcCipher();
    CbcCipher(const CbcCipher &) = delete;
    CbcCipher &operator=(const CbcCipher &) = delete;

    // Replaces `frame` with the whole wire frame (length prefix included) carrying `pt`.
    void seal(const uint8_t *pt, size_t n, std::vector<uint8_t> &frame);

    // Verifies and decrypts a frame body into `pt` (room for n bytes); returns the plaintext
    // length, or SIZE_MAX if the tag or the padding is wrong.
    size_t open(const uint8_t *body, size_t n, uint8_t *pt);

private:
    void mac(const uint8_t *data, size_t n, uint8_t out[kCbcTag]);
    uint8_t mac_key_[32];
    EVP_CIPHER_CTX *enc_ = nullptr, *dec_ = nullptr;
    EVP_MAC *mac_ = nullptr;
    EVP_MAC_CTX *mctx_ = nullptr;
};

}  // namespace loadgen
