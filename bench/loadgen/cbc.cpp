// loadgen: baseline (b)'s cipher (see cbc.hpp for the wire format).
#include "cbc.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <cstdint>
#include <cstring>

#include "common.hpp"

namespace loadgen {

namespace {
constexpr char kCbcSalt[] = "seclink-bench cbc baseline v1";
constexpr char kCbcInfo[] = "aes-256-cbc key || hmac-sha-256 key";
}  // namespace

void derive_cbc_keys(const uint8_t psk[SL_KEY_BYTES], uint8_t enc[32], uint8_t mac[32]) {
    EVP_KDF *kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : nullptr;
    uint8_t out[64];
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char *>("SHA256"), 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t *>(psk), SL_KEY_BYTES),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char *>(kCbcSalt), sizeof kCbcSalt - 1),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char *>(kCbcInfo), sizeof kCbcInfo - 1),
        OSSL_PARAM_construct_end()};
    if (ctx == nullptr || EVP_KDF_derive(ctx, out, sizeof out, params) != 1)
        fatal("HKDF for the cbc keys failed: %s", openssl_errors().c_str());
    std::memcpy(enc, out, 32);
    std::memcpy(mac, out + 32, 32);
    OPENSSL_cleanse(out, sizeof out);
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
}

CbcCipher::CbcCipher(const uint8_t enc_key[32], const uint8_t mac_key[32]) {
    std::memcpy(mac_key_, mac_key, sizeof mac_key_);
    enc_ = EVP_CIPHER_CTX_new();
    dec_ = EVP_CIPHER_CTX_new();
    mac_ = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    mctx_ = mac_ ? EVP_MAC_CTX_new(mac_) : nullptr;
    if (!enc_ || !dec_ || !mctx_ || EVP_EncryptInit_ex(enc_, EVP_aes_256_cbc(), nullptr, enc_key, nullptr) != 1 ||
        EVP_DecryptInit_ex(dec_, EVP_aes_256_cbc(), nullptr, enc_key, nullptr) != 1)
        fatal("cannot set up AES-256-CBC / HMAC: %s", openssl_errors().c_str());
}

CbcCipher::~CbcCipher() {
    EVP_CIPHER_CTX_free(enc_);
    EVP_CIPHER_CTX_free(dec_);
    EVP_MAC_CTX_free(mctx_);
    EVP_MAC_free(mac_);
    OPENSSL_cleanse(mac_key_, sizeof mac_key_);
}

void CbcCipher::seal(const uint8_t *pt, size_t n, std::vector<uint8_t> &frame) {
    const size_t body = cbc_body_len(n);
    frame.resize(4 + body);
    uint8_t *iv = frame.data() + 4, *ct = iv + kCbcIv;
    int len1 = 0, len2 = 0;
    if (RAND_bytes(iv, static_cast<int>(kCbcIv)) != 1 || EVP_EncryptInit_ex(enc_, nullptr, nullptr, nullptr, iv) != 1 ||
        EVP_EncryptUpdate(enc_, ct, &len1, pt, static_cast<int>(n)) != 1 || EVP_EncryptFinal_ex(enc_, ct + len1, &len2) != 1)
        fatal("AES-256-CBC encryption failed: %s", openssl_errors().c_str());
    const size_t ct_len = static_cast<size_t>(len1) + static_cast<size_t>(len2);
    if (ct_len + kCbcIv + kCbcTag != body) fatal("AES-256-CBC produced %zu bytes, expected %zu", ct_len, body - 48);
    mac(iv, kCbcIv + ct_len, ct + ct_len);
    put_be32(frame.data(), static_cast<uint32_t>(body));
}

size_t CbcCipher::open(const uint8_t *body, size_t n, uint8_t *pt) {
    if (n < kCbcIv + kCbcBlock + kCbcTag || (n - kCbcIv - kCbcTag) % kCbcBlock != 0) return SIZE_MAX;
    uint8_t tag[kCbcTag];
    const size_t ct_len = n - kCbcIv - kCbcTag;
    mac(body, kCbcIv + ct_len, tag);
    if (CRYPTO_memcmp(tag, body + n - kCbcTag, kCbcTag) != 0) return SIZE_MAX;  // MAC first, then decrypt
    int len1 = 0, len2 = 0;
    if (EVP_DecryptInit_ex(dec_, nullptr, nullptr, nullptr, body) != 1 ||
        EVP_DecryptUpdate(dec_, pt, &len1, body + kCbcIv, static_cast<int>(ct_len)) != 1 ||
        EVP_DecryptFinal_ex(dec_, pt + len1, &len2) != 1) {
        ERR_clear_error();
        return SIZE_MAX;
    }
    return static_cast<size_t>(len1) + static_cast<size_t>(len2);
}

void CbcCipher::mac(const uint8_t *data, size_t n, uint8_t out[kCbcTag]) {
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char *>("SHA256"), 0),
                           OSSL_PARAM_construct_end()};
    size_t out_len = 0;
    if (EVP_MAC_init(mctx_, mac_key_, sizeof mac_key_, params) != 1 || EVP_MAC_update(mctx_, data, n) != 1 ||
        EVP_MAC_final(mctx_, out, &out_len, kCbcTag) != 1 || out_len != kCbcTag)
        fatal("HMAC-SHA-256 failed: %s", openssl_errors().c_str());
}

}  // namespace loadgen
