// identity.cpp - server identity helpers (docs/PROTOCOL.md 14.3, 14.4): public keys, fingerprints
// people can read aloud, and the clients' known-servers file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "crypto.hpp"
#include "guard.hpp"
#include "identity.hpp"
#include "keyfile.hpp"
#include "seclink/seclink.h"

namespace seclink::detail {

std::string fingerprint_of(const uint8_t pub[kDhLen]) {
    static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";  // RFC 4648 base32
    uint8_t h[kHashLen];
    if (sha256(pub, kDhLen, nullptr, 0, h) != SL_OK) return {};
    std::string out;
    unsigned bits = 0, have = 0;
    for (size_t i = 0; i < 20; ++i) {  // 160 bits: exactly 32 characters
        bits = (bits << 8) | h[i];
        have += 8;
        while (have >= 5) {
            if (out.size() % 5 == 4) out += '-';
            out += kAlphabet[(bits >> (have - 5)) & 31];
            have -= 5;
        }
    }
    return out;
}

int read_authorized_keys(const std::string &path, UserKeys &out, unsigned *bad_line) {
    std::ifstream f(path);
    if (!f) return errno == ENOENT ? SL_EKEY_NOT_FOUND : SL_EIO;
    UserKeys users;
    std::string text;
    for (unsigned n = 1; std::getline(f, text); ++n) {
        if (!text.empty() && text.back() == '\r') text.pop_back();
        if (text.empty() || text[0] == '#') continue;
        const size_t sp = text.find(' ');
        const std::string name = text.substr(0, sp), b64 = sp == std::string::npos ? "" : text.substr(text.find_first_not_of(' ', sp));
        bool ok = !name.empty() && name.size() <= 32;
        for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
        std::array<uint8_t, 32> key{};
        ok = ok && decode_key(b64.c_str(), b64.size(), key.data()) == SL_OK;
        for (const auto &u : users) ok = ok && u.second != key;  // a key listed twice
        if (!ok) {
            if (bad_line != nullptr) *bad_line = n;
            return SL_EKEY_FORMAT;
        }
        users.emplace_back(name, key);
    }
    out = std::move(users);
    return SL_OK;
}

int scrypt(const uint8_t *password, size_t len, const uint8_t *salt, size_t salt_len, uint64_t n, uint32_t r,
           uint32_t p, uint8_t *out, size_t out_len) noexcept {
    EVP_KDF *kdf = EVP_KDF_fetch(nullptr, "SCRYPT", nullptr);
    if (kdf == nullptr) return SL_ECRYPTO;
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (ctx == nullptr) return SL_ECRYPTO;
    uint64_t maxmem = 2 * 128 * uint64_t{r} * (n + p + 2);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string("pass", const_cast<uint8_t *>(password), len),
        OSSL_PARAM_construct_octet_string("salt", const_cast<uint8_t *>(salt), salt_len),
        OSSL_PARAM_construct_uint64("n", &n),
        OSSL_PARAM_construct_uint32("r", &r),
        OSSL_PARAM_construct_uint32("p", &p),
        OSSL_PARAM_construct_uint64("maxmem_bytes", &maxmem),
        OSSL_PARAM_construct_end()};
    const int ok = EVP_KDF_derive(ctx, out, out_len, params);
    EVP_KDF_CTX_free(ctx);
    return ok == 1 ? SL_OK : SL_ECRYPTO;
}

namespace {

// "NAME scrypt N r p SALT HASH" (PROTOCOL.md 16): the fields, if the line is well formed.
struct UserLine {
    std::string name;
    uint64_t n = 0;
    uint32_t r = 0, p = 0;
    std::vector<uint8_t> salt, hash;
};

bool b64decode(const std::string &text, std::vector<uint8_t> &out) {
    if (text.empty() || text.size() % 4 != 0 || text.size() > 1024) return false;
    out.resize(text.size() / 4 * 3);
    const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char *>(text.data()), static_cast<int>(text.size()));
    if (n < 0) return false;
    size_t len = static_cast<size_t>(n);
    for (size_t i = text.size(); i > 0 && text[i - 1] == '='; --i) --len;
    out.resize(len);
    return true;
}

bool parse_user_line(const std::string &text, UserLine &u) {
    std::vector<std::string> f;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find(' ', pos);
        if (end == std::string::npos) end = text.size();
        if (end > pos) f.push_back(text.substr(pos, end - pos));
        pos = end + 1;
    }
    if (f.size() != 7 || f[1] != "scrypt") return false;
    try {
        u.name = f[0];
        u.n = std::stoull(f[2]);
        u.r = static_cast<uint32_t>(std::stoul(f[3]));
        u.p = static_cast<uint32_t>(std::stoul(f[4]));
    } catch (...) {
        return false;
    }
    return u.n >= 2 && (u.n & (u.n - 1)) == 0 && u.n <= (1u << 24) && u.r >= 1 && u.r <= 64 && u.p >= 1 && u.p <= 16 &&
           b64decode(f[5], u.salt) && b64decode(f[6], u.hash) && u.hash.size() >= 16;
}

}  // namespace

int read_password_users(const std::string &path, std::vector<std::string> &lines, unsigned *bad_line) {
    std::ifstream f(path);
    if (!f) return errno == ENOENT ? SL_EKEY_NOT_FOUND : SL_EIO;
    std::vector<std::string> out;
    std::string text;
    for (unsigned n = 1; std::getline(f, text); ++n) {
        if (text.empty() || text[0] == '#') continue;
        UserLine u;
        if (!parse_user_line(text, u)) {
            if (bad_line != nullptr) *bad_line = n;
            return SL_EKEY_FORMAT;
        }
        out.push_back(text);
    }
    lines = std::move(out);
    return SL_OK;
}

bool password_matches(const std::vector<std::string> &lines, const std::string &name, const uint8_t *password,
                      size_t len) {
    for (const auto &text : lines) {
        UserLine u;
        if (!parse_user_line(text, u) || u.name != name) continue;
        std::vector<uint8_t> got(u.hash.size());
        if (scrypt(password, len, u.salt.data(), u.salt.size(), u.n, u.r, u.p, got.data(), got.size()) != SL_OK)
            return false;
        const bool ok = CRYPTO_memcmp(got.data(), u.hash.data(), got.size()) == 0;
        wipe(got.data(), got.size());
        return ok;
    }
    // An unknown name costs the same work as a known one, so timing does not tell names apart.
    uint8_t salt[16] = {}, out[32];
    scrypt(password, len, salt, sizeof salt, 16384, 8, 1, out, sizeof out);
    return false;
}

namespace {

std::string normalised(const char *text) {
    std::string out;
    for (const char *p = text; *p != '\0'; ++p)
        if (*p != '-' && *p != ' ' && *p != ':') out += static_cast<char>(std::toupper(static_cast<unsigned char>(*p)));
    return out;
}

std::string lower(std::string s) {
    for (char &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Group or others may write the file: whoever can, can plant a key.
int check_mode(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT ? SL_ESERVER_KEY_UNKNOWN : SL_EIO;
    return (st.st_mode & 022) != 0 ? SL_EKEY_PERMISSIONS : SL_OK;
}

}  // namespace
}  // namespace seclink::detail

using namespace seclink::detail;

extern "C" {

int sl_key_public(const uint8_t priv[32], uint8_t pub[32]) {
    if (priv == nullptr || pub == nullptr) return SL_EINVAL;
    X25519 k;
    int rc = k.set_private(priv);
    if (rc == SL_OK) std::memcpy(pub, k.public_key(), kDhLen);
    return rc;
}

int sl_key_fingerprint(const uint8_t pub[32], char *buf, size_t cap) {
    if (pub == nullptr || buf == nullptr) return SL_EINVAL;
    return guard([&]() -> int {
        const std::string fp = fingerprint_of(pub);
        if (fp.empty()) return SL_ECRYPTO;
        if (cap <= fp.size()) return SL_ERANGE;
        std::memcpy(buf, fp.c_str(), fp.size() + 1);
        return SL_OK;
    });
}

int sl_fingerprint_matches(const char *text, const uint8_t pub[32]) {
    if (text == nullptr || pub == nullptr) return 0;
    return guard([&]() -> int {
        const std::string want = normalised(fingerprint_of(pub).c_str()), got = normalised(text);
        return !want.empty() && got.size() == want.size() &&
               CRYPTO_memcmp(got.data(), want.data(), want.size()) == 0;
    });
}

int sl_known_servers_lookup(const char *path, const char *host_port, uint8_t pub[32], unsigned *line) {
    if (path == nullptr || host_port == nullptr || pub == nullptr) return SL_EINVAL;
    return guard([&]() -> int {
        int rc = check_mode(path);
        if (rc != SL_OK) return rc;
        std::ifstream f(path);
        if (!f) return SL_EIO;
        const std::string want = lower(host_port);
        std::string text;
        for (unsigned n = 1; std::getline(f, text); ++n) {
            if (text.empty() || text[0] == '#') continue;
            const size_t sp = text.find(' ');
            if (sp == std::string::npos || lower(text.substr(0, sp)) != want) continue;
            const std::string b64 = text.substr(sp + 1);
            if (decode_key(b64.c_str(), b64.size(), pub) != SL_OK) return SL_EKEY_FORMAT;
            if (line != nullptr) *line = n;
            return SL_OK;
        }
        return SL_ESERVER_KEY_UNKNOWN;
    });
}

int sl_known_servers_add(const char *path, const char *host_port, const uint8_t pub[32]) {
    if (path == nullptr || host_port == nullptr || pub == nullptr || std::strpbrk(host_port, " \n") != nullptr)
        return SL_EINVAL;
    return guard([&]() -> int {
        int rc = check_mode(path);
        if (rc != SL_OK && rc != SL_ESERVER_KEY_UNKNOWN) return rc;
        if ((rc = make_parents(path)) != SL_OK) return rc;
        char b64[64];
        EVP_EncodeBlock(reinterpret_cast<unsigned char *>(b64), pub, kDhLen);
        const std::string text = lower(host_port) + " " + b64 + "\n";
        const int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return SL_EIO;
        const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
        return close(fd) == 0 && ok ? SL_OK : SL_EIO;
    });
}

int sl_known_servers_path(char *buf, size_t cap, size_t *needed) {
    return guard([&]() -> int {
        const std::string dir = config_dir();
        if (dir.empty()) return SL_EINVAL;
        const std::string p = dir + "/known_servers";
        if (needed != nullptr) *needed = p.size();
        if (buf == nullptr || cap <= p.size()) return SL_ERANGE;
        std::memcpy(buf, p.c_str(), p.size() + 1);
        return SL_OK;
    });
}

int sl_users_add(const char *path, const char *user, const uint8_t *password, size_t password_len) {
    if (path == nullptr || user == nullptr || (password == nullptr && password_len != 0) || password_len > SL_MAX_PASSWORD)
        return SL_EINVAL;
    return guard([&]() -> int {
        const std::string name = user;
        bool ok = !name.empty() && name.size() <= 32;
        for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
        if (!ok) return SL_EINVAL;
        int rc = check_mode(path);
        if (rc != SL_OK && rc != SL_ESERVER_KEY_UNKNOWN) return rc;
        uint8_t salt[16], hash[32];
        if ((rc = random_bytes(salt, sizeof salt)) != SL_OK) return rc;
        if ((rc = scrypt(password, password_len, salt, sizeof salt, 16384, 8, 1, hash, sizeof hash)) != SL_OK) return rc;
        char salt64[32], hash64[64];
        EVP_EncodeBlock(reinterpret_cast<unsigned char *>(salt64), salt, sizeof salt);
        EVP_EncodeBlock(reinterpret_cast<unsigned char *>(hash64), hash, sizeof hash);
        std::string out;
        {
            std::ifstream f(path);
            std::string text;
            while (std::getline(f, text))
                if (text.rfind(name + " ", 0) != 0) out += text + "\n";  // the user's old line goes
        }
        out += name + " scrypt 16384 8 1 " + salt64 + " " + hash64 + "\n";
        if ((rc = make_parents(path)) != SL_OK) return rc;
        const std::string tmp = std::string(path) + ".new";
        const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return SL_EIO;
        const bool written = fchmod(fd, 0600) == 0 && write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size()) &&
                             fsync(fd) == 0;
        if (close(fd) != 0 || !written || rename(tmp.c_str(), path) != 0) {
            unlink(tmp.c_str());
            return SL_EIO;
        }
        return SL_OK;
    });
}

const char *sl_mode_name(int mode) {
    switch (mode) {
    case SL_MODE_PSK: return "psk";
    case SL_MODE_SERVER_KEY: return "server-key";
    case SL_MODE_USER_KEY: return "user-key";
    case SL_MODE_PASSWORD: return "password";
    default: return "unknown";
    }
}

}  // extern "C"
