// files.cpp - file transfer, the server's side (docs/PROTOCOL.md 10): names, limits, temporary
// files, resume, digests. Called by the session layer (session.cpp), so every server behaves alike.
#include "files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace seclink::detail {
namespace {

void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
    return v;
}

std::string hex(const uint8_t *p, size_t n) {
    static const char *d = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; ++i) {
        s += d[p[i] >> 4];
        s += d[p[i] & 15];
    }
    return s;
}

bool valid_utf8(const std::string &s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        uint32_t cp = n == 1 ? c : c & (0x7F >> n);
        for (size_t k = 1; k < n; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

bool full_disk(int err) { return err == ENOSPC || err == EDQUOT || err == EFBIG; }

}  // namespace

const char *file_code_name(int code) noexcept {
    switch (code) {
    case kNoFiles: return "NO_FILES";
    case kBadName: return "BAD_NAME";
    case kExists: return "EXISTS";
    case kNotFound: return "NOT_FOUND";
    case kTooLarge: return "TOO_LARGE";
    case kQuota: return "QUOTA";
    case kDiskFull: return "DISK_FULL";
    case kHashMismatch: return "HASH_MISMATCH";
    case kBusy: return "BUSY";
    case kIo: return "IO";
    case kSizeMismatch: return "SIZE_MISMATCH";
    default: return "UNKNOWN";
    }
}

// ------------------------------------------------------------------------------------ Sha256

Sha256::Sha256() noexcept : ctx_(EVP_MD_CTX_new()) { reset(); }
Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }
bool Sha256::reset() noexcept { return ok_ = ctx_ != nullptr && EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1; }
bool Sha256::update(const uint8_t *p, size_t n) noexcept {
    return ok_ = ok_ && (n == 0 || EVP_DigestUpdate(ctx_, p, n) == 1);
}
bool Sha256::digest(uint8_t out[32]) const noexcept {
    if (!ok_) return false;
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    unsigned len = 0;
    const bool ok = copy != nullptr && EVP_MD_CTX_copy_ex(copy, ctx_) == 1 && EVP_DigestFinal_ex(copy, out, &len) == 1 &&
                    len == 32;
    EVP_MD_CTX_free(copy);
    return ok;
}

bool hash_file_prefix(int fd, uint64_t n, Sha256 &sha, uint8_t *buf, size_t buf_len) noexcept {
    if (!sha.reset()) return false;
    for (uint64_t off = 0; off < n;) {
        const size_t want = static_cast<size_t>(std::min<uint64_t>(n - off, buf_len));
        ssize_t got = pread(fd, buf, want, static_cast<off_t>(off));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        if (!sha.update(buf, static_cast<size_t>(got))) return false;
        off += static_cast<uint64_t>(got);
    }
    return true;
}

// ------------------------------------------------------------------------------------- names

bool valid_file_name(const std::string &name, std::string *why) {
    auto no = [&](const char *reason) {
        if (why != nullptr) *why = reason;
        return false;
    };
    if (name.empty() || name.size() > 255) return no("a name is 1 to 255 bytes");
    if (!valid_utf8(name)) return no("not valid UTF-8");
    for (char ch : name) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '/' || c == '\\') return no("a plain file name has no '/' or '\\' (no paths)");
        if (c < 0x20 || c == 0x7F) return no("control characters are not allowed");
    }
    if (name[0] == '.') return no("a name may not start with '.' (no '..', no hidden or temporary files)");
    if (name.back() == ' ' || name.back() == '.') return no("a name may not end with a space or '.'");
    std::string base = name.substr(0, name.find('.'));
    for (char &c : base) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    while (!base.empty() && base.back() == ' ') base.pop_back();
    static const char *kDevices[] = {"CON", "PRN", "AUX", "NUL"};
    bool device = std::find_if(std::begin(kDevices), std::end(kDevices), [&](const char *d) { return base == d; }) !=
                  std::end(kDevices);
    if (base.size() == 4 && (base.compare(0, 3, "COM") == 0 || base.compare(0, 3, "LPT") == 0) && base[3] >= '1' &&
        base[3] <= '9')
        device = true;
    if (device) return no("a device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9) is not a file name");
    return true;
}

std::string temp_file_name(const std::string &name) {
    uint8_t h[32];
    Sha256 s;
    s.update(reinterpret_cast<const uint8_t *>(name.data()), name.size());
    s.digest(h);
    return ".seclink-" + hex(h, 16) + ".part";
}

int rename_into_place(int dirfd, const char *from, const char *to, bool replace) noexcept {
    if (replace) return renameat(dirfd, from, dirfd, to);
#ifdef RENAME_NOREPLACE
    if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
#endif
    if (linkat(dirfd, from, dirfd, to, 0) != 0) return -1;
    unlinkat(dirfd, from, 0);
    return 0;
}

// ------------------------------------------------------------------------------ FileTransfer

void FileTransfer::end() noexcept {
    if (fd_ >= 0) ::close(fd_);  // also releases the upload's lock
    fd_ = -1;
    state_ = State::Idle;
    std::vector<uint8_t>().swap(buf_);
}

void FileTransfer::error(int code, const std::string &why, FileReply *r, std::string *log, bool *warn) {
    const bool upload = state_ == State::Upload;
    if (upload && (code == kDiskFull || code == kHashMismatch || code == kSizeMismatch || code == kIo))
        unlinkat(p_.dirfd, temp_.c_str(), 0);  // it can never be completed
    end();
    if (upload) state_ = State::UploadFailed;  // what is still on its way for it is ignored
    buf_.assign(1, static_cast<uint8_t>(code));
    buf_.insert(buf_.end(), why.begin(), why.end());
    *r = FileReply{kFileError, buf_.data(), buf_.size()};
    *log = what_ + " of '" + name_ + "' refused: " + file_code_name(code) + ": " + why;
    *warn = true;
}

bool FileTransfer::hash_prefix(uint64_t n) {
    std::vector<uint8_t> tmp(static_cast<size_t>(std::min<uint64_t>(n, kFileChunk)));
    return hash_file_prefix(fd_, n, sha_, tmp.data(), tmp.size());
}

uint64_t FileTransfer::directory_total() const {
    int fd = openat(p_.dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : nullptr;
    if (d == nullptr) {
        if (fd >= 0) ::close(fd);
        return 0;
    }
    uint64_t total = 0;
    while (dirent *e = readdir(d)) {
        struct stat st;
        if (fstatat(p_.dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            total += static_cast<uint64_t>(st.st_size);
    }
    closedir(d);
    return total;
}

bool FileTransfer::on_message(int type, const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn) {
    *r = FileReply{};
    log->clear();
    *warn = false;
    switch (type) {
    case kFilePut: return put(d, n, r, log, warn);
    case kFileGet: return get(d, n, r, log, warn);
    case kFileData: return data(d, n, r, log, warn);
    case kFileRead: return read(d, n, r, log, warn);
    case kFileEnd: return finish(d, n, r, log, warn);
    default: *log = "a server-to-client file message came from the client"; return false;
    }
}

bool FileTransfer::put(const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn) {
    if (n < 9) return *log = "FILE_PUT shorter than 9 bytes", false;
    if (state_ == State::Upload && pos_ == start_) end();  // the restart after a prefix that did not verify
    if (state_ == State::Upload || state_ == State::Download) return *log = "FILE_PUT during a transfer", false;
    state_ = State::Idle;
    what_ = "upload";
    size_ = get_u64(d);
    const bool restart = (d[8] & 1) != 0;
    name_.assign(reinterpret_cast<const char *>(d + 9), n - 9);
    std::string why;
    if (p_.dirfd < 0) return error(kNoFiles, "this server does not take files (start it with --files DIR)", r, log, warn), true;
    if (!valid_file_name(name_, &why)) return error(kBadName, why, r, log, warn), true;
    if (p_.max_file != 0 && size_ > p_.max_file)
        return error(kTooLarge, "the file is " + std::to_string(size_) + " bytes, over the server's limit of " +
                                    std::to_string(p_.max_file) + " bytes per file", r, log, warn), true;
    struct stat st;
    uint64_t replaced = 0;
    if (fstatat(p_.dirfd, name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISREG(st.st_mode)) return error(kExists, "the name is taken by something other than a file", r, log, warn), true;
        if (!p_.overwrite) return error(kExists, "a file of that name exists (the server does not overwrite)", r, log, warn), true;
        replaced = static_cast<uint64_t>(st.st_size);
    }
    temp_ = temp_file_name(name_);
    uint64_t partial = 0;
    if (fstatat(p_.dirfd, temp_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
        partial = static_cast<uint64_t>(st.st_size);
    if (p_.max_total != 0) {
        const uint64_t all = directory_total();
        const uint64_t total = all - std::min(all, replaced + partial);
        if (total + size_ > p_.max_total)
            return error(kQuota, "the server's directory would pass its total limit of " + std::to_string(p_.max_total) +
                                     " bytes", r, log, warn), true;
    }
    fd_ = openat(p_.dirfd, temp_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd_ < 0) return error(full_disk(errno) ? kDiskFull : kIo, std::string("cannot create the file: ") + std::strerror(errno), r, log, warn), true;
    if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd_);
        fd_ = -1;
        return error(kBusy, "another session is uploading a file of that name", r, log, warn), true;
    }
    if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) return error(kIo, "the temporary file is not a file", r, log, warn), true;
    uint64_t have = static_cast<uint64_t>(st.st_size);
    if (restart || have > size_) {
        if (ftruncate(fd_, 0) != 0) return error(kIo, std::string("cannot truncate: ") + std::strerror(errno), r, log, warn), true;
        have = 0;
    }
    state_ = State::Upload;
    if (!hash_prefix(have)) return error(kIo, "cannot read the partial file", r, log, warn), true;
    pos_ = start_ = have;
    buf_.resize(40);
    put_u64(buf_.data(), have);
    if (!sha_.digest(buf_.data() + 8)) return error(kIo, "SHA-256 failed", r, log, warn), true;
    *r = FileReply{kFileReady, buf_.data(), 40};
    *log = "upload of '" + name_ + "' (" + std::to_string(size_) + " bytes)" +
           (have ? ", resuming after " + std::to_string(have) + " bytes" : std::string());
    return true;
}

bool FileTransfer::data(const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn) {
    if (state_ == State::UploadFailed) return true;  // on its way before our FILE_ERROR
    if (state_ != State::Upload) return *log = "FILE_DATA with no upload open", false;
    if (n == 0 || n > kFileChunk) return *log = "FILE_DATA of " + std::to_string(n) + " bytes", false;
    if (pos_ + n > size_) return error(kSizeMismatch, "more bytes than the size announced", r, log, warn), true;
    for (size_t off = 0; off < n;) {
        ssize_t w = pwrite(fd_, d + off, n - off, static_cast<off_t>(pos_ + off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 || w == 0) {
            const int err = w < 0 ? errno : ENOSPC;
            return error(full_disk(err) ? kDiskFull : kIo,
                         std::string(full_disk(err) ? "the server's disk is full: " : "write failed: ") + std::strerror(err),
                         r, log, warn), true;
        }
        off += static_cast<size_t>(w);
    }
    sha_.update(d, n);
    pos_ += n;
    return true;
}

bool FileTransfer::finish(const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn) {
    if (state_ == State::UploadFailed) {
        state_ = State::Idle;
        return true;
    }
    if (state_ == State::Download) {
        if (n != 0) return *log = "a download's FILE_END has content", false;
        if (pos_ != size_) return error(kSizeMismatch, "FILE_END before the whole file was read", r, log, warn), true;
        buf_.resize(40);
        put_u64(buf_.data(), size_);
        if (!sha_.digest(buf_.data() + 8)) return error(kIo, "SHA-256 failed", r, log, warn), true;
        *log = "sent '" + name_ + "' (" + std::to_string(size_ - start_) + " of " + std::to_string(size_) +
               " bytes, sha256 " + hex(buf_.data() + 8, 32) + ")";
        ::close(fd_);
        fd_ = -1;
        state_ = State::Idle;
        *r = FileReply{kFileDone, buf_.data(), 40};
        return true;
    }
    if (state_ != State::Upload) return *log = "FILE_END with no transfer open", false;
    if (n != 32) return *log = "an upload's FILE_END is not a 32-byte digest", false;
    if (pos_ != size_)
        return error(kSizeMismatch, "the upload ended after " + std::to_string(pos_) + " of " + std::to_string(size_) +
                                        " bytes", r, log, warn), true;
    uint8_t mine[32];
    if (!sha_.digest(mine)) return error(kIo, "SHA-256 failed", r, log, warn), true;
    if (CRYPTO_memcmp(mine, d, 32) != 0)
        return error(kHashMismatch, "the SHA-256 of the bytes received is not the sender's: nothing was stored", r, log,
                     warn), true;
    if (fsync(fd_) != 0)
        return error(full_disk(errno) ? kDiskFull : kIo, std::string("cannot flush the file: ") + std::strerror(errno), r,
                     log, warn), true;
    int rc = rename_into_place(p_.dirfd, temp_.c_str(), name_.c_str(), p_.overwrite);
    if (rc != 0) {
        const int err = errno;
        if (err == EEXIST) {
            unlinkat(p_.dirfd, temp_.c_str(), 0);
            return error(kExists, "a file of that name appeared meanwhile (the server does not overwrite)", r, log, warn), true;
        }
        return error(kIo, std::string("cannot rename: ") + std::strerror(err), r, log, warn), true;
    }
    fsync(p_.dirfd);
    buf_.resize(40);
    put_u64(buf_.data(), size_);
    std::memcpy(buf_.data() + 8, mine, 32);
    *log = "stored '" + name_ + "' (" + std::to_string(size_) + " bytes, sha256 " + hex(mine, 32) + ")";
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    state_ = State::Idle;
    *r = FileReply{kFileDone, buf_.data(), 40};
    return true;
}

bool FileTransfer::get(const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn) {
    if (n < 40) return *log = "FILE_GET shorter than 40 bytes", false;
    if (state_ == State::Upload || state_ == State::Download) return *log = "FILE_GET during a transfer", false;
    state_ = State::Idle;
    what_ = "download";
    const uint64_t have = get_u64(d);
    name_.assign(reinterpret_cast<const char *>(d + 40), n - 40);
    std::string why;
    if (p_.dirfd < 0) return error(kNoFiles, "this server does not serve files (start it with --files DIR)", r, log, warn), true;
    if (!valid_file_name(name_, &why)) return error(kBadName, why, r, log, warn), true;
    fd_ = openat(p_.dirfd, name_.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd_ < 0 || fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
        const bool link = fd_ < 0 && errno == ELOOP;
        return error(kNotFound, link ? "the name is a symbolic link, which is never followed" : "no such file", r, log, warn), true;
    }
    size_ = static_cast<uint64_t>(st.st_size);
    state_ = State::Download;
    uint64_t start = 0;
    uint8_t mine[32];
    if (have > 0 && have <= size_ && hash_prefix(have) && sha_.digest(mine) && CRYPTO_memcmp(mine, d + 8, 32) == 0)
        start = have;
    if (start == 0) sha_.reset();
    pos_ = start_ = start;
    buf_.resize(16);
    put_u64(buf_.data(), size_);
    put_u64(buf_.data() + 8, start);
    *r = FileReply{kFileInfo, buf_.data(), 16};
    *log = "download of '" + name_ + "' (" + std::to_string(size_) + " bytes)" +
           (start ? ", resuming after " + std::to_string(start) + " bytes" : std::string());
    return true;
}

bool FileTransfer::read(const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn) {
    if (state_ != State::Download) return *log = "FILE_READ with no download open", false;
    if (n != 4) return *log = "FILE_READ is not 4 bytes", false;
    const uint32_t want = (uint32_t{d[0]} << 24) | (uint32_t{d[1]} << 16) | (uint32_t{d[2]} << 8) | d[3];
    if (want == 0 || want > kFileChunk) return *log = "FILE_READ of " + std::to_string(want) + " bytes", false;
    if (pos_ >= size_) return *log = "FILE_READ past the end of the file", false;
    const size_t len = static_cast<size_t>(std::min<uint64_t>(want, size_ - pos_));
    buf_.resize(len);
    for (size_t off = 0; off < len;) {
        ssize_t got = pread(fd_, buf_.data() + off, len - off, static_cast<off_t>(pos_ + off));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return error(got == 0 ? kSizeMismatch : kIo, got == 0 ? "the file shrank while being sent" : "read failed", r, log, warn), true;
        off += static_cast<size_t>(got);
    }
    sha_.update(buf_.data(), len);
    pos_ += len;
    *r = FileReply{kFileData, buf_.data(), len};
    return true;
}

}  // namespace seclink::detail
