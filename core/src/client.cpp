// client.cpp - the native blocking client: connect (with a deadline), optional TLS 1.3 with
// mandatory certificate verification, the seclink/1 handshake, then send/recv of messages.
// The socket is non-blocking underneath; every wait is a poll() with a deadline.
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "engine.hpp"
#include "files.hpp"
#include "guard.hpp"
#include "keyfile.hpp"
#include "net.hpp"
#include "seclink/seclink.h"

using namespace seclink::detail;

struct sl_client {
    Stream io;
    SslCtxPtr tls_ctx;
    std::unique_ptr<Connection> conn;
    seclink::detail::Secret<SL_KEY_BYTES> identity;  // mode 3 (PROTOCOL.md 15): what conn points at
    std::string peer;
    sl_log_fn log = nullptr;
    void *log_ud = nullptr;
    int io_timeout_ms = SL_DEFAULT_TIMEOUT_MS;  // how long a send may wait for the server to read
    bool received_any = false;
    bool closed = false;
    uint8_t rbuf[64 * 1024];
    size_t rpos = 0, rlen = 0;  // unprocessed received bytes in rbuf
    // Messages read after a write failed (read_before_write_error), for sl_client_recv; and the
    // content of the one it handed out last.
    std::deque<std::pair<int, std::vector<uint8_t>>> kept;
    std::vector<uint8_t> kept_out;
};

namespace {

// Called from inside the (noexcept) engine: allocates nothing, so it cannot throw.
void trace_frame(void *ud, const sl_frame_info *f) noexcept {
    auto *c = static_cast<sl_client *>(ud);
    char buf[8192];
    sl_format_frame(f, c->peer.c_str(), buf, sizeof buf);
    c->log(c->log_ud, SL_LOG_TRACE, buf);
}

int wait_fd(int fd, short events, int64_t deadline) {
    for (;;) {
        int64_t left = deadline < 0 ? -1 : deadline - now_ms();
        if (deadline >= 0 && left <= 0) return SL_ETIMEDOUT;
        pollfd p{fd, events, 0};
        int r = poll(&p, 1, left < 0 ? -1 : static_cast<int>(left > 1000000 ? 1000000 : left));
        if (r > 0) return SL_OK;
        if (r < 0 && errno != EINTR) return SL_ESOCKET;
    }
}

int64_t deadline_after(int timeout_ms) { return timeout_ms < 0 ? -1 : now_ms() + timeout_ms; }

int connect_tcp(const char *host, uint16_t port, int64_t deadline, int *fd_out, std::string *peer) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    const std::string service = std::to_string(port);
    if (getaddrinfo(host, service.c_str(), &hints, &res) != 0 || res == nullptr) return SL_ERESOLVE;
    int rc = SL_ECONNREFUSED;
    for (addrinfo *ai = res; ai != nullptr; ai = ai->ai_next) {
        int fd = open_socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            rc = errno_to_sl(errno);
            continue;
        }
        int err = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
        if (err == EINPROGRESS) {
            rc = wait_fd(fd, POLLOUT, deadline);
            socklen_t len = sizeof err;
            err = rc == SL_OK && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : -1;
        }
        if (err == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            *fd_out = fd;
            *peer = peer_name(fd);
            freeaddrinfo(res);
            return SL_OK;
        }
        if (err > 0) rc = errno_to_sl(err);
        close(fd);
        if (rc == SL_ETIMEDOUT) break;
    }
    freeaddrinfo(res);
    return rc;
}

// Writes everything the engine has queued.
int flush(sl_client *c, int64_t deadline) {
    while (c->conn->pending_size() > 0) {
        size_t n = 0;
        Io r = c->io.write(c->conn->pending(), c->conn->pending_size(), &n);
        if (r == Io::Done) {
            c->conn->consume(n);
            continue;
        }
        if (r == Io::Eof) return SL_EPEER_CLOSED;
        if (r == Io::Error) return c->io.last_error;
        int rc = wait_fd(c->io.fd, r == Io::WantRead ? POLLIN : POLLOUT, deadline);
        if (rc != SL_OK) return rc;
    }
    return SL_OK;
}

// Reads more bytes into rbuf (which must be fully processed).
int fill(sl_client *c, int64_t deadline) {
    for (;;) {
        size_t n = 0;
        Io r = c->io.read(c->rbuf, sizeof c->rbuf, &n);
        if (r == Io::Done) {
            if (!c->received_any && !c->io.ssl && n >= 2 && (c->rbuf[0] == 0x15 || c->rbuf[0] == 0x16) &&
                c->rbuf[1] == 0x03)
                return SL_ETLS_UNEXPECTED;  // a TLS record (alert or handshake) where seclink was expected
            c->received_any = true;
            c->rpos = 0;
            c->rlen = n;
            return SL_OK;
        }
        if (r == Io::Eof) return c->conn->feed_eof() == SL_ETRUNCATED ? SL_ETRUNCATED : SL_EPEER_CLOSED;
        if (r == Io::Error) return c->io.last_error;
        int rc = wait_fd(c->io.fd, r == Io::WantWrite ? POLLOUT : POLLIN, deadline);
        if (rc != SL_OK) return rc;
    }
}

// Next engine event (never SL_EVENT_NONE on success).
int next_event(sl_client *c, int64_t deadline, sl_event *ev) {
    for (;;) {
        while (c->rpos < c->rlen) {
            size_t used = 0;
            int rc = c->conn->feed(c->rbuf + c->rpos, c->rlen - c->rpos, &used, ev);
            if (rc != SL_OK) return rc;
            c->rpos += used;
            if (ev->type != SL_EVENT_NONE) return SL_OK;
        }
        int rc = fill(c, deadline);
        if (rc != SL_OK) return rc;
    }
}

// A write failed because the server has closed (PROTOCOL.md 5, closing the stream): if its
// CLOSE has already arrived, that is the answer to report. Reads what is there without waiting
// and keeps the messages for sl_client_recv (the CLOSE last); the send then counts as done. With
// no CLOSE there, the write's error stands.
int read_before_write_error(sl_client *c, int rc) noexcept {
    if (rc != SL_EPEER_CLOSED) return rc;
    const int found = guard([&]() -> int {
        for (;;) {
            sl_event ev{};
            const int r = next_event(c, now_ms(), &ev);
            if (r != SL_OK) return r;
            if (ev.type != SL_EVENT_MESSAGE || ev.msg_type == SL_MSG_PING) continue;
            c->kept.emplace_back(ev.msg_type, std::vector<uint8_t>(ev.data, ev.data + ev.len));
            if (ev.msg_type == SL_MSG_CLOSE) return SL_OK;
        }
    });
    return found == SL_OK ? SL_OK : rc;
}

int start_tls(sl_client *c, const sl_client_config *cfg, int64_t deadline) {
    std::string trust;
    const char *ca = cfg->tls_ca;
    const bool pinned = cfg->tls_pin != nullptr && cfg->tls_pin[0] != '\0';
    if (pinned && sl_tls_pin_parse(cfg->tls_pin, nullptr) != SL_OK) return SL_EINVAL;
    if (ca == nullptr && !pinned) {  // trust the certificate a local server generated
        trust = (cfg->tls_trust_dir ? std::string(cfg->tls_trust_dir) : config_dir()) + "/tls/cert.pem";
        ca = trust.c_str();
    }
    int rc = make_client_tls(ca, &c->tls_ctx);  // no CA: only the pin is checked
    if (rc != SL_OK) return rc;
    c->io.ssl.reset(SSL_new(c->tls_ctx.get()));
    if (!c->io.ssl || attach_socket(c->io.ssl.get(), c->io.fd) != SL_OK) return SL_ETLS;
    SSL_set_connect_state(c->io.ssl.get());
    if (ca != nullptr) {  // the host name (or address) must match the certificate
        X509_VERIFY_PARAM *param = SSL_get0_param(c->io.ssl.get());
        in6_addr a6;
        in_addr a4;
        bool ip = inet_pton(AF_INET, cfg->host, &a4) == 1 || inet_pton(AF_INET6, cfg->host, &a6) == 1;
        if ((ip ? X509_VERIFY_PARAM_set1_ip_asc(param, cfg->host) : X509_VERIFY_PARAM_set1_host(param, cfg->host, 0)) != 1)
            return SL_ETLS;
        if (!ip) SSL_set_tlsext_host_name(c->io.ssl.get(), cfg->host);
    }
    for (;;) {
        Io r = c->io.tls_handshake();
        if (r == Io::Done) break;
        if (r == Io::Eof || r == Io::Error) return classify_tls_failure(c->io.ssl.get(), r == Io::Eof);
        if ((rc = wait_fd(c->io.fd, r == Io::WantWrite ? POLLOUT : POLLIN, deadline)) != SL_OK) return rc;
    }
    return pinned ? check_pin(c->io.ssl.get(), cfg->tls_pin) : SL_OK;
}

int connect_client(sl_client *c, const sl_client_config *cfg) {
    const int64_t deadline = now_ms() + (cfg->timeout_ms ? cfg->timeout_ms : SL_DEFAULT_TIMEOUT_MS);
    int rc = connect_tcp(cfg->host, cfg->port, deadline, &c->io.fd, &c->peer);
    if (rc != SL_OK) return rc;
    if (cfg->tls && (rc = start_tls(c, cfg, deadline)) != SL_OK) return rc;
    c->conn = std::make_unique<Connection>(SL_CLIENT, cfg->psk);
    if ((rc = c->conn->set_max_message(cfg->max_message ? cfg->max_message : SL_DEFAULT_MAX_MESSAGE)) != SL_OK) return rc;
    if (cfg->rekey_bytes != 0 && (rc = c->conn->set_rekey_bytes(cfg->rekey_bytes)) != SL_OK) return rc;
    if (cfg->mode != 0 && (rc = c->conn->set_mode(cfg->mode)) != SL_OK) return rc;
    if (cfg->server_key != nullptr && (rc = c->conn->set_expected_server_key(cfg->server_key)) != SL_OK) return rc;
    if (cfg->user != nullptr && (rc = c->conn->set_login(cfg->user, cfg->password, cfg->password_len)) != SL_OK)
        return rc;
    if (cfg->identity != nullptr) {
        std::memcpy(c->identity.data(), cfg->identity, SL_KEY_BYTES);
        if ((rc = c->conn->set_static_key(c->identity.data())) != SL_OK) return rc;
    }
    if (cfg->trace && cfg->log != nullptr) c->conn->set_trace(trace_frame, c);
    if ((rc = c->conn->start()) != SL_OK || (rc = flush(c, deadline)) != SL_OK) return rc;
    sl_event ev{};
    rc = next_event(c, deadline, &ev);
    // What the server said about itself (PROTOCOL.md 14), for the caller to show, even on failure.
    if (cfg->server_key_seen != nullptr && c->conn->server_static() != nullptr)
        std::memcpy(cfg->server_key_seen, c->conn->server_static(), SL_KEY_BYTES);
    if (cfg->server_modes_seen != nullptr) *cfg->server_modes_seen = c->conn->server_modes();
    if (rc != SL_OK) return rc;
    if (ev.type != SL_EVENT_HANDSHAKE_DONE) return SL_EINTERNAL;
    // The key-confirmation PING (PROTOCOL.md 4.1), sent at once.
    return read_before_write_error(c, flush(c, deadline));
}

// ------------------------------------------------------------------- files (PROTOCOL.md 10)

void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
    return v;
}

void note(sl_file_result *r, const std::string &text) {
    std::snprintf(r->message, sizeof r->message, "%s", text.c_str());
}

int send_now(sl_client *c, int type, const uint8_t *data, size_t len) {
    int rc = c->conn->send(type, data, len);
    return rc != SL_OK ? rc : flush(c, now_ms() + c->io_timeout_ms);
}

// The next file message (other messages are skipped); a FILE_ERROR becomes SL_EFILE_REFUSED.
int file_reply(sl_client *c, int timeout_ms, int *type, const uint8_t **data, size_t *len, sl_file_result *r) {
    for (;;) {
        int rc = sl_client_recv(c, timeout_ms, type, data, len);
        if (rc != SL_OK) return rc;
        if (*type == SL_MSG_CLOSE) {
            note(r, "the server closed the session: " + std::string(reinterpret_cast<const char *>(*data), *len));
            return SL_ECLOSED;
        }
        if (*type == kFileError) {
            if (*len < 1) return SL_EBAD_FILE_MSG;
            r->remote_code = (*data)[0];
            note(r, std::string(file_code_name((*data)[0])) + ": " +
                        std::string(reinterpret_cast<const char *>(*data) + 1, *len - 1));
            return SL_EFILE_REFUSED;
        }
        if (is_file_msg(*type)) return SL_OK;
    }
}

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

int send_file(sl_client *c, const char *path, const char *name, sl_progress_fn progress, void *ud, sl_file_result *r) {
    Fd f;
    f.fd = ::open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (f.fd < 0 || fstat(f.fd, &st) != 0) return note(r, std::string(path) + ": " + std::strerror(errno)), SL_EIO;
    if (!S_ISREG(st.st_mode)) return note(r, std::string(path) + " is not a regular file"), SL_EIO;
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    r->size = size;
    const size_t name_len = std::strlen(name);
    std::vector<uint8_t> buf(std::max<size_t>(kFileChunk, 9 + name_len));
    Sha256 sha;
    uint64_t offset = 0;
    for (int attempt = 0;; ++attempt) {  // a FILE_PUT, and once more with restart if the prefix differs
        put_u64(buf.data(), size);
        buf[8] = attempt == 0 ? 0 : 1;
        std::memcpy(buf.data() + 9, name, name_len);
        int rc = send_now(c, kFilePut, buf.data(), 9 + name_len);
        int type = 0;
        const uint8_t *d = nullptr;
        size_t len = 0;
        if (rc == SL_OK) rc = file_reply(c, c->io_timeout_ms, &type, &d, &len, r);
        if (rc != SL_OK) return rc;
        if (type != kFileReady || len != 40) return SL_EBAD_FILE_MSG;
        offset = get_u64(d);
        uint8_t theirs[32], mine[32];
        std::memcpy(theirs, d + 8, 32);
        if (offset <= size && hash_file_prefix(f.fd, offset, sha, buf.data(), buf.size()) && sha.digest(mine) &&
            CRYPTO_memcmp(mine, theirs, 32) == 0)
            break;
        if (attempt > 0 || offset == 0) return note(r, "the server's partial file does not verify"), SL_EBAD_FILE_MSG;
    }
    r->resumed_from = offset;
    if (progress != nullptr) progress(ud, offset, size);
    for (uint64_t pos = offset; pos < size;) {
        const size_t want = static_cast<size_t>(std::min<uint64_t>(size - pos, kFileChunk));
        ssize_t got = pread(f.fd, buf.data(), want, static_cast<off_t>(pos));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return note(r, std::string(path) + ": " + (got < 0 ? std::strerror(errno) : "the file shrank while being sent")), SL_EIO;
        sha.update(buf.data(), static_cast<size_t>(got));
        int rc = send_now(c, kFileData, buf.data(), static_cast<size_t>(got));
        if (rc != SL_OK) return rc;
        pos += static_cast<uint64_t>(got);
        int type = 0;  // a FILE_ERROR (full disk...) stops the upload at once
        const uint8_t *d = nullptr;
        size_t len = 0;
        rc = file_reply(c, 0, &type, &d, &len, r);
        if (rc == SL_OK) return SL_EBAD_FILE_MSG;  // nothing but an error may come now
        if (rc != SL_ETIMEDOUT) return rc;
        if (progress != nullptr) progress(ud, pos, size);
    }
    uint8_t digest[32];
    if (!sha.digest(digest)) return SL_ECRYPTO;
    std::memcpy(r->sha256, digest, 32);
    int rc = send_now(c, kFileEnd, digest, 32);
    int type = 0;
    const uint8_t *d = nullptr;
    size_t len = 0;
    // The server flushes the file to disk before it answers: allow it some time.
    if (rc == SL_OK) rc = file_reply(c, std::max(c->io_timeout_ms, 60000), &type, &d, &len, r);
    if (rc != SL_OK) return rc;
    if (type != kFileDone || len != 40) return SL_EBAD_FILE_MSG;
    if (get_u64(d) != size || CRYPTO_memcmp(d + 8, digest, 32) != 0) return SL_EFILE_HASH;
    return SL_OK;
}

int get_file(sl_client *c, const char *name, const char *path, int overwrite, sl_progress_fn progress, void *ud,
             sl_file_result *r) {
    const std::string dest(path);
    const size_t slash = dest.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : dest.substr(0, slash);
    const std::string base = slash == std::string::npos ? dest : dest.substr(slash + 1);
    struct stat st;
    if (!overwrite && lstat(path, &st) == 0) return note(r, dest + " exists"), SL_EFILE_EXISTS;
    Fd dfd;
    dfd.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd.fd < 0) return note(r, dir + ": " + std::strerror(errno)), SL_EIO;
    const std::string temp = temp_file_name(base);
    Fd f;  // an earlier attempt's temporary file, if any (created only once the server said yes)
    f.fd = openat(dfd.fd, temp.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if ((f.fd < 0 && errno != ENOENT) || (f.fd >= 0 && fstat(f.fd, &st) != 0))
        return note(r, dir + "/" + temp + ": " + std::strerror(errno)), SL_EIO;
    uint64_t have = f.fd >= 0 ? static_cast<uint64_t>(st.st_size) : 0;
    const size_t name_len = std::strlen(name);
    std::vector<uint8_t> buf(std::max<size_t>(kFileChunk, 40 + name_len));
    Sha256 sha;
    uint8_t prefix[32];
    if (!hash_file_prefix(f.fd, have, sha, buf.data(), buf.size()) || !sha.digest(prefix))
        return note(r, "cannot read " + temp), SL_EIO;
    put_u64(buf.data(), have);
    std::memcpy(buf.data() + 8, prefix, 32);
    std::memcpy(buf.data() + 40, name, name_len);
    int rc = send_now(c, kFileGet, buf.data(), 40 + name_len);
    int type = 0;
    const uint8_t *d = nullptr;
    size_t len = 0;
    if (rc == SL_OK) rc = file_reply(c, std::max(c->io_timeout_ms, 60000), &type, &d, &len, r);
    if (rc != SL_OK) return rc;
    if (type != kFileInfo || len != 16) return SL_EBAD_FILE_MSG;
    const uint64_t size = get_u64(d), start = get_u64(d + 8);
    if (start != 0 && start != have) return SL_EBAD_FILE_MSG;
    if (f.fd < 0) f.fd = openat(dfd.fd, temp.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f.fd < 0) return note(r, dir + "/" + temp + ": " + std::strerror(errno)), SL_EIO;
    if (start == 0) {
        sha.reset();
        if (ftruncate(f.fd, 0) != 0) return note(r, std::strerror(errno)), SL_EIO;
    }
    r->size = size;
    r->resumed_from = start;
    if (progress != nullptr) progress(ud, start, size);
    constexpr int kWindow = 4;  // FILE_READs outstanding: the server holds at most 1 MiB for us
    uint64_t pos = start, asked = start;
    int outstanding = 0;
    while (pos < size) {
        while (outstanding < kWindow && asked < size) {
            const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kFileChunk, size - asked));
            const uint8_t req[4] = {static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
                                    static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
            if ((rc = c->conn->send(kFileRead, req, 4)) != SL_OK) return rc;
            asked += n;
            ++outstanding;
        }
        if ((rc = flush(c, now_ms() + c->io_timeout_ms)) != SL_OK) return rc;
        if ((rc = file_reply(c, c->io_timeout_ms, &type, &d, &len, r)) != SL_OK) return rc;
        if (type != kFileData || len == 0 || len > size - pos) return SL_EBAD_FILE_MSG;
        for (size_t off = 0; off < len;) {
            ssize_t w = pwrite(f.fd, d + off, len - off, static_cast<off_t>(pos + off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return note(r, dir + "/" + temp + ": " + std::strerror(w < 0 ? errno : ENOSPC)), SL_EIO;
            off += static_cast<size_t>(w);
        }
        sha.update(d, len);
        pos += len;
        --outstanding;
        if (progress != nullptr) progress(ud, pos, size);
    }
    rc = send_now(c, kFileEnd, nullptr, 0);
    if (rc == SL_OK) rc = file_reply(c, c->io_timeout_ms, &type, &d, &len, r);
    if (rc != SL_OK) return rc;
    if (type != kFileDone || len != 40) return SL_EBAD_FILE_MSG;
    uint8_t mine[32];
    if (!sha.digest(mine)) return SL_ECRYPTO;
    std::memcpy(r->sha256, mine, 32);
    if (get_u64(d) != size || CRYPTO_memcmp(d + 8, mine, 32) != 0) {
        unlinkat(dfd.fd, temp.c_str(), 0);  // never kept: it is not what the server has
        return note(r, "the SHA-256 of the bytes received is not the server's"), SL_EFILE_HASH;
    }
    if (fsync(f.fd) != 0) return note(r, std::strerror(errno)), SL_EIO;
    rc = rename_into_place(dfd.fd, temp.c_str(), base.c_str(), overwrite != 0);
    if (rc != 0) {
        const int err = errno;
        return note(r, dest + ": " + std::strerror(err)), err == EEXIST ? SL_EFILE_EXISTS : SL_EIO;
    }
    fsync(dfd.fd);
    return SL_OK;
}

}  // namespace

extern "C" {

const char *sl_file_code_name(int code) { return file_code_name(code); }

int sl_file_name_valid(const char *name) { return name != nullptr && valid_file_name(name) ? 1 : 0; }

int sl_client_send_file(sl_client *c, const char *path, const char *name, sl_progress_fn progress, void *ud,
                        sl_file_result *result) {
    if (c == nullptr || path == nullptr || result == nullptr) return SL_EINVAL;
    *result = sl_file_result{};
    std::string n = name != nullptr ? name : path;
    if (name == nullptr && n.rfind('/') != std::string::npos) n = n.substr(n.rfind('/') + 1);
    const int rc = guard([&] { return send_file(c, path, n.c_str(), progress, ud, result); });
    ERR_clear_error();
    return rc;
}

int sl_client_get_file(sl_client *c, const char *name, const char *path, int overwrite, sl_progress_fn progress,
                       void *ud, sl_file_result *result) {
    if (c == nullptr || name == nullptr || result == nullptr) return SL_EINVAL;
    *result = sl_file_result{};
    if (path == nullptr && !valid_file_name(name)) return note(result, "not a plain file name"), SL_EINVAL;
    const int rc = guard([&] { return get_file(c, name, path != nullptr ? path : name, overwrite, progress, ud, result); });
    ERR_clear_error();
    return rc;
}

void sl_client_config_init(sl_client_config *cfg) {
    if (cfg == nullptr) return;
    *cfg = sl_client_config{};
    cfg->host = "127.0.0.1";
    cfg->port = 5000;
    cfg->timeout_ms = SL_DEFAULT_TIMEOUT_MS;
    cfg->max_message = SL_DEFAULT_MAX_MESSAGE;
}

int sl_client_connect(sl_client **out, const sl_client_config *cfg) {
    if (out == nullptr) return SL_EINVAL;
    *out = nullptr;
    if (cfg == nullptr || cfg->psk == nullptr || cfg->host == nullptr || cfg->max_message > SL_MAX_MESSAGE_LIMIT)
        return SL_EINVAL;
    std::unique_ptr<sl_client> c(new (std::nothrow) sl_client);
    if (!c) return SL_ENOMEM;
    c->log = cfg->log;
    c->log_ud = cfg->log_ud;
    c->io_timeout_ms = cfg->timeout_ms ? static_cast<int>(cfg->timeout_ms) : static_cast<int>(SL_DEFAULT_TIMEOUT_MS);
    const int rc = guard([&] { return connect_client(c.get(), cfg); });
    ERR_clear_error();
    if (rc == SL_OK) *out = c.release();
    return rc;
}

int sl_client_send(sl_client *c, int msg_type, const uint8_t *data, size_t len) {
    if (c == nullptr) return SL_EINVAL;
    int rc = c->conn->send(msg_type, data, len);
    // A server that stops reading must not hang us: a send may wait timeout_ms in all.
    return rc != SL_OK ? rc : read_before_write_error(c, flush(c, now_ms() + c->io_timeout_ms));
}

int sl_client_queue(sl_client *c, int msg_type, const uint8_t *data, size_t len) {
    if (c == nullptr) return SL_EINVAL;
    return c->conn->send(msg_type, data, len);
}

int sl_client_flush(sl_client *c, int timeout_ms) {
    if (c == nullptr) return SL_EINVAL;
    return read_before_write_error(c, flush(c, deadline_after(timeout_ms)));
}

size_t sl_client_pending(const sl_client *c) { return c != nullptr ? c->conn->pending_size() : 0; }

int sl_client_fd(const sl_client *c) { return c != nullptr ? c->io.fd : -1; }

int sl_client_rekey(sl_client *c) {
    if (c == nullptr) return SL_EINVAL;
    int rc = c->conn->rekey();
    return rc != SL_OK ? rc : flush(c, now_ms() + c->io_timeout_ms);
}

int sl_client_recv(sl_client *c, int timeout_ms, int *msg_type, const uint8_t **data, size_t *len) {
    if (c == nullptr || msg_type == nullptr || data == nullptr || len == nullptr) return SL_EINVAL;
    if (!c->kept.empty()) {  // read after a write failed: the server's last words
        *msg_type = c->kept.front().first;
        c->kept_out.swap(c->kept.front().second);
        c->kept.pop_front();
        if (*msg_type == SL_MSG_CLOSE) c->closed = true;
        *data = c->kept_out.data();
        *len = c->kept_out.size();
        return SL_OK;
    }
    if (c->closed) return SL_ECLOSED;
    const int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        sl_event ev{};
        int rc = next_event(c, deadline, &ev);
        if (rc != SL_OK) return rc;
        if (ev.type != SL_EVENT_MESSAGE) continue;
        if (ev.msg_type == SL_MSG_PING) {  // the engine queued the PONG
            if ((rc = flush(c, deadline)) != SL_OK) return rc;
            continue;
        }
        if (ev.msg_type == SL_MSG_CLOSE) c->closed = true;
        *msg_type = ev.msg_type;
        *data = ev.data;
        *len = ev.len;
        return SL_OK;
    }
}

int sl_client_close(sl_client *c, const char *reason) {
    if (c == nullptr) return SL_EINVAL;
    int rc = SL_OK;
    if (!c->conn->closed()) {
        const size_t n = reason != nullptr ? std::strlen(reason) : 0;
        rc = c->conn->send(SL_MSG_CLOSE, reinterpret_cast<const uint8_t *>(reason), n);
        if (rc == SL_OK) rc = flush(c, now_ms() + 2000);
    }
    if (c->io.ssl) SSL_shutdown(c->io.ssl.get());
    shutdown(c->io.fd, SHUT_WR);
    c->closed = true;
    ERR_clear_error();
    return rc;
}

const char *sl_client_peer(const sl_client *c) { return c != nullptr ? c->peer.c_str() : ""; }

void sl_client_free(sl_client *c) { delete c; }

}  // extern "C"
