// tls_cert.cpp - the self-signed certificate a server creates when --tls has no --tls-cert, and
// certificate fingerprints. Through the OpenSSL API only (no `openssl` program).
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "guard.hpp"
#include "seclink/seclink.h"

namespace {

struct X509Free {
    void operator()(X509 *x) const noexcept { X509_free(x); }
};
struct PkeyFree {
    void operator()(EVP_PKEY *k) const noexcept { EVP_PKEY_free(k); }
};
struct BioFree {
    void operator()(BIO *b) const noexcept { BIO_free(b); }
};
struct ExtFree {
    void operator()(X509_EXTENSION *e) const noexcept { X509_EXTENSION_free(e); }
};

bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int make_parents(const std::string &path) {
    for (size_t i = path.find('/', 1); i != std::string::npos; i = path.find('/', i + 1))
        if (mkdir(path.substr(0, i).c_str(), 0700) != 0 && errno != EEXIST) return SL_EIO;
    return SL_OK;
}

bool add_ext(X509 *cert, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    std::unique_ptr<X509_EXTENSION, ExtFree> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
    return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

// Writes `pem` to a new file with `mode` (O_EXCL: never replaces a file).
template <class F>
int write_pem(const char *path, mode_t mode, F &&emit) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return SL_EIO;
    FILE *f = fdopen(fd, "w");
    if (f == nullptr) {
        close(fd);
        return SL_EIO;
    }
    bool ok = emit(f) == 1;
    ok = (fclose(f) == 0) && ok;
    if (!ok) unlink(path);
    return ok ? SL_OK : SL_ECRYPTO;
}

}  // namespace

extern "C" int sl_tls_ensure_self_signed(const char *cert_path, const char *key_path, int *created) {
    if (created != nullptr) *created = 0;
    if (cert_path == nullptr || key_path == nullptr) return SL_EINVAL;
    if (exists(cert_path) && exists(key_path)) return SL_OK;
    return seclink::detail::guard([&]() -> int {
        if (make_parents(cert_path) != SL_OK || make_parents(key_path) != SL_OK) return SL_EIO;
        std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_EC_gen("P-256"));
        std::unique_ptr<X509, X509Free> cert(X509_new());
        if (!key || !cert) return SL_ECRYPTO;
        uint8_t serial[16];
        if (RAND_bytes(serial, sizeof serial) != 1) return SL_ECRYPTO;
        serial[0] &= 0x7f;  // a positive serial number
        BIGNUM *bn = BN_bin2bn(serial, sizeof serial, nullptr);
        bool ok = bn != nullptr && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())) != nullptr;
        BN_free(bn);
        X509_NAME *name = X509_get_subject_name(cert.get());
        ok = ok && X509_set_version(cert.get(), 2) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
             X509_gmtime_adj(X509_getm_notAfter(cert.get()), 825L * 24 * 3600) != nullptr &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        reinterpret_cast<const unsigned char *>("seclink local server"), -1, -1, 0) == 1 &&
             X509_set_issuer_name(cert.get(), name) == 1 && X509_set_pubkey(cert.get(), key.get()) == 1 &&
             add_ext(cert.get(), NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(cert.get(), NID_key_usage, "critical,digitalSignature") &&
             add_ext(cert.get(), NID_ext_key_usage, "serverAuth") &&
             add_ext(cert.get(), NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") &&
             X509_sign(cert.get(), key.get(), EVP_sha256()) > 0;
        if (!ok) return SL_ECRYPTO;
        unlink(cert_path);  // a half pair (one file without the other) is replaced whole
        unlink(key_path);
        int rc = write_pem(key_path, 0600, [&](FILE *f) {
            return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
        });
        if (rc == SL_OK) rc = write_pem(cert_path, 0644, [&](FILE *f) { return PEM_write_X509(f, cert.get()); });
        if (rc == SL_OK && created != nullptr) *created = 1;
        return rc;
    });
}

extern "C" int sl_tls_pin_parse(const char *pin, uint8_t out[32]) {
    if (pin == nullptr) return SL_EINVAL;
    uint8_t want[32] = {};
    size_t n = 0;
    for (const char *p = pin; *p != '\0'; ++p) {
        if (*p == ':') continue;
        const char c = *p;
        const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0 || n >= 64) return SL_EINVAL;
        want[n / 2] = static_cast<uint8_t>(n % 2 == 0 ? v << 4 : want[n / 2] | v);
        ++n;
    }
    if (n != 64) return SL_EINVAL;
    if (out != nullptr) std::memcpy(out, want, sizeof want);
    return SL_OK;
}

extern "C" int sl_tls_fingerprint(const char *cert_path, char *buf, size_t cap) {
    if (cert_path == nullptr || buf == nullptr || cap < 65) return SL_EINVAL;
    std::unique_ptr<BIO, BioFree> bio(BIO_new_file(cert_path, "r"));
    if (!bio) return SL_ETLS_CERT;
    std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    uint8_t md[32];
    unsigned int len = 0;
    if (!cert || X509_digest(cert.get(), EVP_sha256(), md, &len) != 1 || len != 32) return SL_ETLS_CERT;
    static const char *d = "0123456789abcdef";
    for (unsigned i = 0; i < 32; ++i) {
        buf[2 * i] = d[md[i] >> 4];
        buf[2 * i + 1] = d[md[i] & 15];
    }
    buf[64] = '\0';
    return SL_OK;
}
