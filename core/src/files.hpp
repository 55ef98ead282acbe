// files.hpp - file transfer (docs/PROTOCOL.md 10): the server's side, a part of the session layer
// (one FileTransfer per session, its policy in FilePolicy), and the streaming SHA-256 both sides use.
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace seclink::detail {

inline constexpr size_t kFileChunk = 256 * 1024;  // the largest FILE_DATA and FILE_READ

enum FileMsg : int {
    kFilePut = 0x21,
    kFileGet = 0x22,
    kFileReady = 0x23,
    kFileInfo = 0x24,
    kFileData = 0x25,
    kFileRead = 0x26,
    kFileEnd = 0x27,
    kFileDone = 0x28,
    kFileError = 0x2F,
};
inline bool is_file_msg(int type) { return (type >= kFilePut && type <= kFileDone) || type == kFileError; }

enum FileCode : int {
    kNoFiles = 1,
    kBadName = 2,
    kExists = 3,
    kNotFound = 4,
    kTooLarge = 5,
    kQuota = 6,
    kDiskFull = 7,
    kHashMismatch = 8,
    kBusy = 9,
    kIo = 10,
    kSizeMismatch = 11,
};
const char *file_code_name(int code) noexcept;

// Streaming SHA-256 (EVP); every call reports failure rather than throwing.
class Sha256 {
public:
    Sha256() noexcept;
    ~Sha256();
    Sha256(const Sha256 &) = delete;
    Sha256 &operator=(const Sha256 &) = delete;
    bool reset() noexcept;
    bool update(const uint8_t *p, size_t n) noexcept;
    bool digest(uint8_t out[32]) const noexcept;  // of what was hashed so far; hashing may go on

private:
    EVP_MD_CTX *ctx_;
    bool ok_ = false;
};

// Restarts `sha` and hashes the first n bytes of fd into it (pread: fd's offset is unchanged),
// through buf[0..buf_len). false: a read failed or the file is shorter than n.
bool hash_file_prefix(int fd, uint64_t n, Sha256 &sha, uint8_t *buf, size_t buf_len) noexcept;

// PROTOCOL.md 10: a plain file name (no path, no control characters, no leading '.', no device
// name). `why` (if not null) gets the reason when it is not.
bool valid_file_name(const std::string &name, std::string *why = nullptr);
// The temporary file of an upload of `name`: ".seclink-<32 hex of SHA-256(name)>.part".
std::string temp_file_name(const std::string &name);

// Renames `from` to `to`, both in directory `dirfd`; unless `replace`, never over an existing
// `to` (errno EEXIST then). Linux: renameat2(RENAME_NOREPLACE); elsewhere (or on a file system
// without it) linkat + unlinkat, which fails the same way if `to` exists.
int rename_into_place(int dirfd, const char *from, const char *to, bool replace) noexcept;

struct FilePolicy {
    int dirfd = -1;  // the directory, opened once (O_DIRECTORY); -1: no files served
    bool overwrite = false;
    uint64_t max_file = 0, max_total = 0;
};

struct FileReply {
    int type = 0;  // 0: nothing to send
    const uint8_t *data = nullptr;
    size_t len = 0;
};

// One session's transfer. on_message() takes one file message from the client and gives at
// most one reply (valid until the next call) and a line for the log.
class FileTransfer {
public:
    explicit FileTransfer(const FilePolicy &p) : p_(p) {}
    ~FileTransfer() { end(); }
    FileTransfer(const FileTransfer &) = delete;
    FileTransfer &operator=(const FileTransfer &) = delete;

    // false: the message breaks PROTOCOL.md 10 (BAD_FILE_MSG); `log` says how.
    bool on_message(int type, const uint8_t *data, size_t len, FileReply *reply, std::string *log, bool *warn);
    void end() noexcept;  // closes what is open (an unfinished upload's temporary file stays)
    size_t buffered() const noexcept { return buf_.capacity(); }
    // A quiet session keeps no chunk buffer (unless a transfer is open: it is needed again).
    void trim() noexcept {
        if (state_ == State::Idle || state_ == State::UploadFailed) std::vector<uint8_t>().swap(buf_);
    }

private:
    enum class State { Idle, Upload, UploadFailed, Download };
    bool put(const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn);
    bool get(const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn);
    bool data(const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn);
    bool read(const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn);
    bool finish(const uint8_t *d, size_t n, FileReply *r, std::string *log, bool *warn);
    void error(int code, const std::string &why, FileReply *r, std::string *log, bool *warn);
    bool hash_prefix(uint64_t n);  // hashes the first n bytes of fd_ into sha_
    uint64_t directory_total() const;

    const FilePolicy &p_;
    State state_ = State::Idle;
    int fd_ = -1;
    std::string name_, temp_, what_ = "transfer";
    uint64_t size_ = 0, pos_ = 0, start_ = 0;
    Sha256 sha_;
    std::vector<uint8_t> buf_;  // a reply's content
};

}  // namespace seclink::detail
