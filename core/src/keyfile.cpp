// keyfile.cpp - pre-shared key files (docs/PROTOCOL.md section 6). The file's content is
// untrusted: it is read with a small bound, validated strictly, and wiped from memory.
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "crypto.hpp"
#include "keyfile.hpp"

#include "guard.hpp"

namespace seclink::detail {
namespace {

constexpr size_t kMaxKeyFile = 256;  // a valid file has 44 or 45 bytes

bool is_b64(char c) noexcept {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int from_errno(int e) noexcept {
    switch (e) {
    case ENOENT:
    case ENOTDIR: return SL_EKEY_NOT_FOUND;
    case ELOOP: return SL_EKEY_SYMLINK;
    case EEXIST: return SL_EKEY_EXISTS;
    default: return SL_EIO;
    }
}

// Who may own a key file or its directory: the user we run as; root, for the directory; and,
// when we run as root, anyone, with a warning.
int check_owner(uid_t owner, bool is_dir, int refusal, unsigned *warnings) noexcept {
    const uid_t me = geteuid();
    if (owner == me || (is_dir && owner == 0)) return SL_OK;
    if (me != 0) return refusal;
    if (warnings != nullptr) *warnings |= SL_KEY_WARN_OTHER_OWNER;
    return SL_OK;
}

// Opens the directory that holds the key file `path` and checks that no other user can change
// what is in it (docs/PROTOCOL.md section 6). The directory is the real one, after any symbolic
// links on the way; the caller opens the file relative to *dirfd, so what was checked is what is
// read. *base points at the file's name inside `path`.
int open_key_dir(const char *path, int *dirfd, const char **base, unsigned *warnings) noexcept {
    *dirfd = -1;
    const char *slash = std::strrchr(path, '/');
    *base = slash != nullptr ? slash + 1 : path;
    if (**base == '\0') return SL_EKEY_NOT_FILE;  // "dir/": a directory
    char dir[4096] = ".";
    if (slash != nullptr) {
        const size_t len = slash == path ? 1 : static_cast<size_t>(slash - path);
        if (len >= sizeof dir) return SL_EIO;
        std::memcpy(dir, path, len);
        dir[len] = '\0';
    }
#ifdef O_PATH
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);  // search permission is enough
#else
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // (no O_PATH: read permission too)
#endif
    if (fd < 0) return from_errno(errno);
    struct stat st;
    int rc = fstat(fd, &st) != 0 ? SL_EIO : check_owner(st.st_uid, true, SL_EKEY_DIR, warnings);
    if (rc == SL_OK && (st.st_mode & 022) != 0) rc = SL_EKEY_DIR;  // sticky or not: see PROTOCOL.md 6
    if (rc != SL_OK) {
        close(fd);
        return rc;
    }
    *dirfd = fd;
    return SL_OK;
}

std::string home_dir() {
    const char *home = std::getenv("HOME");
    if (home != nullptr && home[0] == '/') return home;
    struct passwd pw, *res = nullptr;
    char buf[4096];
    if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res != nullptr && res->pw_dir)
        return res->pw_dir;
    return {};
}

}  // namespace

// Creates each missing parent directory of `path` with mode 0700.
int make_parents(const std::string &path) {  // may throw bad_alloc: generate_key guards it
    for (size_t i = path.find('/', 1); i != std::string::npos; i = path.find('/', i + 1)) {
        std::string dir = path.substr(0, i);
        if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return SL_EIO;
    }
    return SL_OK;
}


// Strict standard base64 with padding; the decoded length is checked by the caller.
int decode_key(const char *text, size_t len, uint8_t key[kKeyLen]) noexcept {
    if (len == 0 || len % 4 != 0 || len > kMaxKeyFile) return SL_EKEY_FORMAT;
    size_t pad = 0;
    while (pad < 2 && text[len - 1 - pad] == '=') ++pad;
    for (size_t i = 0; i < len - pad; ++i)
        if (!is_b64(text[i])) return SL_EKEY_FORMAT;
    uint8_t out[kMaxKeyFile];
    int n = EVP_DecodeBlock(out, reinterpret_cast<const unsigned char *>(text), static_cast<int>(len));
    int rc = SL_OK;
    if (n < 0 || static_cast<size_t>(n) < pad) rc = SL_EKEY_FORMAT;
    else if (static_cast<size_t>(n) - pad != kKeyLen) rc = SL_EKEY_SIZE;
    else {
        // Canonical only: the 32 bytes must encode back to exactly this text.
        char again[kMaxKeyFile];
        EVP_EncodeBlock(reinterpret_cast<unsigned char *>(again), out, static_cast<int>(kKeyLen));
        if (CRYPTO_memcmp(again, text, len) != 0) rc = SL_EKEY_FORMAT;
        else std::memcpy(key, out, kKeyLen);
        wipe(again, sizeof again);
    }
    wipe(out, sizeof out);
    return rc;
}

int load_key(const char *path, uint8_t key[kKeyLen], unsigned *warnings) noexcept {
    std::memset(key, 0, kKeyLen);
    unsigned notes = 0;
    const char *base = nullptr;
    int dirfd = -1;
    int rc = open_key_dir(path, &dirfd, &base, &notes);
    struct stat st;
    // The file's own problems are reported before its directory's (a missing key is NOT_FOUND).
    if (rc == SL_OK || rc == SL_EKEY_DIR) {
        int probe = dirfd >= 0 ? dirfd : AT_FDCWD;
        const char *name = dirfd >= 0 ? base : path;
        if (fstatat(probe, name, &st, AT_SYMLINK_NOFOLLOW) != 0) rc = from_errno(errno);
        else if (S_ISLNK(st.st_mode)) rc = SL_EKEY_SYMLINK;
        else if (!S_ISREG(st.st_mode)) rc = SL_EKEY_NOT_FILE;
        else if (int owner = check_owner(st.st_uid, false, SL_EKEY_OWNER, &notes); owner != SL_OK) rc = owner;
    }
    if (rc != SL_OK) {
        if (dirfd >= 0) close(dirfd);
        return rc;
    }
    // O_NOFOLLOW and fstat close the window between fstatat and open.
    int fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    close(dirfd);
    if (fd < 0) return from_errno(errno);
    char buf[kMaxKeyFile + 1];
    size_t len = 0;
    if (fstat(fd, &st) != 0) rc = SL_EIO;
    else if (!S_ISREG(st.st_mode)) rc = SL_EKEY_NOT_FILE;
    else if ((st.st_mode & 077) != 0) rc = SL_EKEY_PERMISSIONS;
    else rc = check_owner(st.st_uid, false, SL_EKEY_OWNER, &notes);
    while (rc == SL_OK && len < sizeof buf) {
        ssize_t n = read(fd, buf + len, sizeof buf - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = SL_EIO;
        if (n <= 0) break;
        len += static_cast<size_t>(n);
    }
    close(fd);
    if (rc == SL_OK && len > kMaxKeyFile) rc = SL_EKEY_FORMAT;
    if (rc == SL_OK) {
        size_t text_len = len;
        if (text_len > 0 && buf[text_len - 1] == '\n') --text_len;  // one optional newline
        rc = decode_key(buf, text_len, key);
    }
    wipe(buf, sizeof buf);
    if (rc != SL_OK) wipe(key, kKeyLen);
    else if (warnings != nullptr) *warnings = notes;
    return rc;
}

int generate_key(const char *path, uint8_t key_out[kKeyLen]) noexcept {
    uint8_t key[kKeyLen];
    char text[64];  // 44 base64 characters, a newline, a NUL
    int rc = guard([&] { return make_parents(path); });  // builds strings: out of memory is ENOMEM
    if (rc != SL_OK) return rc;
    // Never write a key where the loader would refuse it, nor where someone else could swap it.
    const char *base = nullptr;
    int dirfd = -1;
    if ((rc = open_key_dir(path, &dirfd, &base, nullptr)) != SL_OK) return rc == SL_EKEY_NOT_FOUND ? SL_EIO : rc;
    int fd = openat(dirfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    const int open_errno = errno;
    close(dirfd);
    if (fd < 0) return open_errno == EEXIST ? SL_EKEY_EXISTS : SL_EIO;
    rc = random_bytes(key, kKeyLen);
    size_t len = 0;
    if (rc == SL_OK) {
        len = static_cast<size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char *>(text), key, kKeyLen));
        text[len++] = '\n';
        if (fchmod(fd, 0600) != 0) rc = SL_EIO;  // whatever the umask did
    }
    for (size_t done = 0; rc == SL_OK && done < len;) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) rc = SL_EIO;
        else done += static_cast<size_t>(n);
    }
    if (rc == SL_OK && fsync(fd) != 0) rc = SL_EIO;
    if (close(fd) != 0 && rc == SL_OK) rc = SL_EIO;
    if (rc != SL_OK) unlink(path);
    else if (key_out != nullptr) std::memcpy(key_out, key, kKeyLen);
    wipe(key, sizeof key);
    wipe(text, sizeof text);
    return rc;
}

std::string config_dir() {
    const char *xdg = std::getenv("XDG_CONFIG_HOME");
    if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/seclink";
    std::string home = home_dir();
    return home.empty() ? std::string() : home + "/.config/seclink";
}

std::string key_path(const char *explicit_path) {
    if (explicit_path != nullptr && explicit_path[0] != '\0') return explicit_path;
    const char *env = std::getenv("SECLINK_PSK_FILE");
    if (env != nullptr && env[0] != '\0') return env;
    std::string dir = config_dir();
    return dir.empty() ? std::string() : dir + "/psk";
}

}  // namespace seclink::detail
