// session.cpp - the session layer (session.hpp): admission, limits, deadlines, the memory budget,
// replies and every log line of a server session, written once for every I/O driver.
#include "session.hpp"

#include "guard.hpp"
#include "identity.hpp"

#include <fcntl.h>
#if defined(__linux__)
#include <sched.h>
#endif
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <thread>
#include <utility>

#include <openssl/crypto.h>

namespace seclink::detail {
namespace {

std::string errtext(int rc) { return std::string(sl_errname(rc)) + ": " + sl_strerror(rc); }

std::string secs(unsigned ms) {
    return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

std::string mib(size_t n) {
    return n % (1024 * 1024) == 0 ? std::to_string(n / (1024 * 1024)) + " MiB" : std::to_string(n) + " bytes";
}

std::string bytes(size_t n) { return std::to_string(n) + (n == 1 ? " byte" : " bytes"); }

// The source address of "host:port" or "[v6]:port".
std::string address_of(const std::string &peer) {
    size_t colon = peer.rfind(':');
    std::string host = colon == std::string::npos ? peer : peer.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return host;
}

// A fatal TLS alert record (protocol_version): how a TLS server answers a plain client, which can
// then tell its user that the server speaks TLS rather than guess from a closed socket.
constexpr char kTlsAlert[] = "\x15\x03\x03\x00\x02\x02\x46";

}  // namespace

unsigned default_threads(unsigned cpus) noexcept { return cpus > 1 ? cpus - 1 : 1; }

int check_server_config(const sl_server_config &c) {
    if (c.psk == nullptr || c.max_message > SL_MAX_MESSAGE_LIMIT || c.psk_count > SL_MAX_PSKS ||
        (c.modes & ~SL_MODES_ALL) != 0 || ((c.modes & (1u << SL_MODE_SERVER_KEY)) != 0 && c.server_key == nullptr))
        return SL_EINVAL;
    if (c.authorized_keys != nullptr) {  // a file that cannot be read is an error at start
        UserKeys users;
        const int rc = read_authorized_keys(c.authorized_keys, users, nullptr);
        if (rc != SL_OK) return rc;
    }
    if (c.password_users != nullptr) {
        std::vector<std::string> lines;
        const int rc = read_password_users(c.password_users, lines, nullptr);
        if (rc != SL_OK) return rc;
    }
    return SL_OK;
}

void apply_server_defaults(sl_server_config &c) noexcept {
    if (c.max_clients == 0) c.max_clients = SL_DEFAULT_MAX_CLIENTS;
    if (c.handshake_timeout_ms == 0) c.handshake_timeout_ms = SL_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    if (c.idle_timeout_ms == 0) c.idle_timeout_ms = SL_DEFAULT_IDLE_TIMEOUT_MS;
    if (c.max_handshakes == 0) c.max_handshakes = SL_DEFAULT_MAX_HANDSHAKES;
    if (c.max_handshakes_per_addr == 0) c.max_handshakes_per_addr = SL_DEFAULT_MAX_HANDSHAKES_PER_ADDR;
    if (c.handshake_rate == 0) c.handshake_rate = SL_DEFAULT_HANDSHAKE_RATE;
    if (c.frame_timeout_ms == 0) c.frame_timeout_ms = SL_DEFAULT_FRAME_TIMEOUT_MS;
    if (c.max_file_size == 0) c.max_file_size = SL_DEFAULT_MAX_FILE_SIZE;
    if (c.max_files_total == 0) c.max_files_total = SL_DEFAULT_MAX_FILES_TOTAL;
    if (c.max_memory == 0) c.max_memory = SL_DEFAULT_MAX_MEMORY;
    if (c.chat_rooms == 0) c.chat_rooms = SL_DEFAULT_CHAT_ROOMS;
    if (c.chat_members == 0) c.chat_members = SL_DEFAULT_CHAT_MEMBERS;
    if (c.chat_rate == 0) c.chat_rate = SL_DEFAULT_CHAT_RATE;
    if (c.chat_queue == 0) c.chat_queue = SL_DEFAULT_CHAT_QUEUE;
}

// ----------------------------------------------------------------------------------- Checker

PasswordCheck::~PasswordCheck() { OPENSSL_cleanse(password.data(), password.size()); }

Checker::~Checker() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    for (auto &t : threads_) t.join();
}

bool Checker::submit(std::shared_ptr<PasswordCheck> check) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (queue_.size() >= kQueue) return false;
        if (threads_.size() < kThreads) threads_.emplace_back([this] { run(); });  // at the first checks
        queue_.push_back(std::move(check));
    }
    cv_.notify_one();
    return true;
}

// Every check taken gets its verdict and reaches the wake below, even one whose session is gone
// (then without scrypt, and without the wake); a stopping checker answers what is queued first.
void Checker::run() {
    for (;;) {
        std::shared_ptr<PasswordCheck> c;
        bool stopping = false;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stopped, and every check answered
            c = std::move(queue_.front());
            queue_.pop_front();
            stopping = stop_;
        }
        bool skip = stopping;
        {
            std::lock_guard<std::mutex> lock(c->mu);
            skip = skip || c->cancelled;  // its session (or the policy) is gone: not worth 0.1 s of scrypt
        }
        const bool ok = !skip && guard([&] {
                                     return p_.check_password(c->name, c->password.data(), c->password.size())
                                                ? SL_OK
                                                : SL_EINVAL;
                                 }) == SL_OK;
        std::lock_guard<std::mutex> lock(c->mu);
        c->done = true;
        c->ok = ok;
        if (!c->cancelled && c->wake != nullptr) c->wake(c->wake_ud);  // under the lock: close() waits
    }
}

// ------------------------------------------------------------------------------------ Policy

Policy::Policy(const sl_server_config &c) : cfg(c) {
    if (c.psk != nullptr) std::memcpy(psk.data(), c.psk, SL_KEY_BYTES);
    const size_t n = c.psk_count == 0 ? 1 : c.psk_count;
    if (c.psk != nullptr && n > 1) keys.assign(c.psk, n);
    if (c.psk_names != nullptr)
        for (size_t i = 0; i < n; ++i) key_names.emplace_back(c.psk_names[i] != nullptr ? c.psk_names[i] : "");
    if (c.server_key != nullptr) {
        std::memcpy(static_key.data(), c.server_key, SL_KEY_BYTES);
        has_static_key = true;
    }
    if (c.authorized_keys != nullptr) {
        users_path_ = c.authorized_keys;
        unsigned line = 0;
        if (read_authorized_keys(users_path_, users_, &line) != SL_OK) users_path_.clear();  // sl_policy_new refuses
    }
    cfg.authorized_keys = nullptr;
    if (c.password_users != nullptr) {
        passwords_path_ = c.password_users;
        if (read_password_users(passwords_path_, passwords_, nullptr) != SL_OK) passwords_path_.clear();
    }
    cfg.password_users = nullptr;
    if (cfg.modes == 0)
        cfg.modes = (1u << SL_MODE_PSK) | (has_static_key ? 1u << SL_MODE_SERVER_KEY : 0u) |
                    (has_static_key && !users_path_.empty() ? 1u << SL_MODE_USER_KEY : 0u) |
                    (has_static_key && !passwords_path_.empty() ? 1u << SL_MODE_PASSWORD : 0u);
    // "SLNK" 0x00 n versions..., zero-padded to 48 bytes, with its length prefix (PROTOCOL.md 14.2).
    std::string body("SLNK\0\0", 6);
    for (int m = 1; m < 32; ++m)
        if (cfg.modes & (1u << m)) body += static_cast<char>(m);
    body[5] = static_cast<char>(body.size() - 6);
    body.resize(std::max<size_t>(body.size(), SL_HANDSHAKE2_BYTES), '\0');
    const uint32_t blen = static_cast<uint32_t>(body.size());
    modes_frame = std::string{static_cast<char>(blen >> 24), static_cast<char>(blen >> 16),
                              static_cast<char>(blen >> 8), static_cast<char>(blen)} + body;
    cfg.psk = nullptr;  // the copies above are the only ones kept
    cfg.psk_names = nullptr;
    cfg.server_key = nullptr;
    cfg.host = nullptr;
    cfg.tls_cert = cfg.tls_key = nullptr;
    apply_server_defaults(cfg);
    if (c.files_dir != nullptr) files.dirfd = ::open(c.files_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cfg.files_dir = nullptr;
    files.overwrite = cfg.files_overwrite != 0;
    files.max_file = cfg.max_file_size;
    files.max_total = cfg.max_files_total;
    if (cfg.redact && cfg.log_level > SL_LOG_MSG) cfg.log_level = SL_LOG_MSG;  // traces hold plaintext
    const std::string cluster = c.chat_cluster != nullptr ? c.chat_cluster : "";
    cfg.chat_cluster = nullptr;
    if (cfg.chat) {
        cfg.handler = nullptr;  // chat lines are relayed, not answered
        cfg.echo = 0;
        chat = std::make_unique<Chat>(*this, cluster);
    }
}

Policy::~Policy() {
    if (files.dirfd >= 0) ::close(files.dirfd);
}

std::string Policy::user_for(const uint8_t pub[32]) {
    std::lock_guard<std::mutex> lock(users_mu_);
    for (const auto &u : users_)
        if (CRYPTO_memcmp(u.second.data(), pub, 32) == 0) return u.first;
    return {};
}

int Policy::reload_users() {
    if (users_path_.empty() && passwords_path_.empty()) return SL_EINVAL;
    int result = SL_OK;
    auto report = [&](const char *what, const std::string &path, int rc, unsigned line, size_t n) {
        if (rc != SL_OK) {
            log(SL_LOG_WARN, std::string("[WARN] ") + what + " " + path + (line ? " line " + std::to_string(line) : "") +
                                 ": " + errtext(rc) + "; the previous list stays in force");
            result = rc;
        } else {
            log(SL_LOG_INFO, std::string("[INFO] ") + what + " " + path + ": " + std::to_string(n) + (n == 1 ? " user" : " users"));
        }
    };
    if (!users_path_.empty()) {
        UserKeys fresh;
        unsigned line = 0;
        const int rc = read_authorized_keys(users_path_, fresh, &line);
        const size_t n = fresh.size();
        if (rc == SL_OK) {
            std::lock_guard<std::mutex> lock(users_mu_);
            users_.swap(fresh);
        }
        report("authorized keys", users_path_, rc, line, n);
    }
    if (!passwords_path_.empty()) {
        std::vector<std::string> fresh;
        unsigned line = 0;
        const int rc = read_password_users(passwords_path_, fresh, &line);
        const size_t n = fresh.size();
        if (rc == SL_OK) {
            std::lock_guard<std::mutex> lock(users_mu_);
            passwords_.swap(fresh);
        }
        report("password users", passwords_path_, rc, line, n);
    }
    return result;
}

bool Policy::check_password(const std::string &name, const uint8_t *password, size_t len) {
    std::vector<std::string> lines;
    {
        std::lock_guard<std::mutex> lock(users_mu_);
        lines = passwords_;  // scrypt runs outside the lock
    }
    return password_matches(lines, name, password, len);
}

bool Policy::locked_out(const std::string &name, const std::string &addr, int64_t now) {
    std::lock_guard<std::mutex> lock(users_mu_);
    for (const std::string &key : {"u:" + name, "a:" + addr}) {
        auto it = failures_.find(key);
        if (it != failures_.end() && it->second.count >= kFreeFailures && now - it->second.last < kLockoutMs) return true;
    }
    return false;
}

void Policy::login_result(const std::string &name, const std::string &addr, bool ok, int64_t now) {
    std::lock_guard<std::mutex> lock(users_mu_);
    if (failures_.size() > 4096) {  // forget failures older than the lockout
        for (auto it = failures_.begin(); it != failures_.end();)
            it = now - it->second.last >= kLockoutMs ? failures_.erase(it) : std::next(it);
    }
    for (const std::string &key : {"u:" + name, "a:" + addr}) {
        if (ok) {
            failures_.erase(key);
            continue;
        }
        Failures &f = failures_[key];
        if (now - f.last >= kLockoutMs) f.count = 0;
        ++f.count;
        f.last = now;
    }
}

void Policy::log(int level, const std::string &line) noexcept {
    if (!logs(level)) return;
    std::lock_guard<std::mutex> lock(log_mu_);
    cfg.log(cfg.log_ud, level, line.c_str());
}

void Policy::out_of_fds() noexcept {
    guard([&] {
        log(SL_LOG_WARN, "[WARN] out of file descriptors: refused a connection (raise the open-files limit, or "
                         "serve fewer clients)");
        return SL_OK;
    });
}

bool Policy::admit(const std::string &addr, int64_t now, int64_t *retry_at, bool queued, bool *full) {
    std::lock_guard<std::mutex> lock(mu_);
    if (addrs_.size() > 4096) {  // forget addresses with nothing held and a full bucket
        for (auto it = addrs_.begin(); it != addrs_.end();) {
            const double bucket = it->second.tokens + double(now - it->second.refilled) * cfg.handshake_rate / 1000.0;
            it = it->second.pending == 0 && bucket >= cfg.handshake_rate ? addrs_.erase(it) : std::next(it);
        }
    }
    Addr &a = addrs_[addr];
    const double rate = cfg.handshake_rate;
    a.tokens = !a.seen ? rate : std::min(rate, a.tokens + double(now - a.refilled) * rate / 1000.0);
    a.refilled = now;
    a.seen = true;
    *full = handshakes.load() + (queued ? 0 : waiting.load()) >= cfg.max_handshakes;
    if (*full || a.pending >= cfg.max_handshakes_per_addr) {
        *retry_at = now + kAdmitPollMs;
        return false;
    }
    if (a.tokens < 1.0) {
        *retry_at = now + std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1.0 - a.tokens) * 1000.0 / rate)));
        return false;
    }
    a.tokens -= 1.0;
    ++a.pending;
    handshakes.fetch_add(1);
    return true;
}

void Policy::release_handshake(const std::string &addr) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    handshakes.fetch_sub(1);
    auto it = addrs_.find(addr);
    if (it != addrs_.end() && it->second.pending > 0) --it->second.pending;
}

bool Policy::take_session() noexcept {
    if (sessions.fetch_add(1) < cfg.max_clients) return true;
    sessions.fetch_sub(1);
    return false;
}

bool Policy::charge(int64_t delta, size_t limit) noexcept {
    if (delta <= 0) {
        memory.fetch_sub(static_cast<size_t>(-delta));
        return true;
    }
    const size_t d = static_cast<size_t>(delta);
    size_t cur = memory.load();
    do {
        if (cur + d > limit) return false;
    } while (!memory.compare_exchange_weak(cur, cur + d));
    return true;
}

// ----------------------------------------------------------------------------------- Session

Session::Session(Policy &policy, std::string peer, int64_t now)
    : p_(policy), conn_(SL_SERVER, policy.psk), peer_(std::move(peer)), started_(now), last_active_(now) {
    addr_ = address_of(peer_);
    // Replies may be larger than what this server accepts (an ACK for a tiny limit, say): what
    // limits them is the client, whose default limit is the protocol default.
    setup_ok_ = conn_.set_max_message(p_.cfg.max_message) == SL_OK &&
                conn_.set_max_send(std::max<size_t>(p_.cfg.max_message, SL_DEFAULT_MAX_MESSAGE)) == SL_OK;
    if (p_.logs(SL_LOG_TRACE)) conn_.set_trace(on_trace, this);
    if (p_.cfg.rekey_bytes != 0) setup_ok_ = setup_ok_ && conn_.set_rekey_bytes(p_.cfg.rekey_bytes) == SL_OK;
    setup_ok_ = setup_ok_ && conn_.set_accepted_modes(p_.cfg.modes) == SL_OK;
    if (p_.has_static_key) setup_ok_ = setup_ok_ && conn_.set_static_key(p_.static_key.data()) == SL_OK;
    if (p_.keys.size() > 1) setup_ok_ = setup_ok_ && conn_.set_key_ring(&p_.keys) == SL_OK;
    setup_ok_ = setup_ok_ && conn_.start() == SL_OK;
    if (!setup_ok_) {
        p_.log(SL_LOG_ERROR, "[ERROR] " + peer_ + " could not be set up; connection dropped");
        phase_ = Phase::Closed;
        status_ = SL_SESSION_CLOSED;
        closed_ = true;
        return;
    }
    if (p_.chat) {
        chat_ = std::make_unique<ChatMember>();
        chat_->peer = peer_;
    }
    p_.connections.fetch_add(1);
    counted_ = true;
    if (p_.logs(SL_LOG_INFO)) p_.log(SL_LOG_INFO, "[INFO] " + peer_ + " connected");
    try_admit(now);
}

void Session::on_trace(void *ud, const sl_frame_info *f) {
    auto *s = static_cast<Session *>(ud);
    std::string buf(8192, '\0');
    size_t n = sl_format_frame(f, s->peer_.c_str(), buf.data(), buf.size());
    buf.resize(n);
    s->p_.log(SL_LOG_TRACE, buf);
}

std::string Session::shown(const uint8_t *data, size_t len) const {
    if (p_.cfg.redact) return "<redacted>";
    char buf[256];
    sl_format_message(data, len, buf, sizeof buf);
    return buf;
}

// A session waits for a handshake slot at most twice the handshake timeout: every slot holder
// has at most one, so at least one slot turns over while it waits.
void Session::try_admit(int64_t now) {
    const int64_t max_wait = 2 * int64_t{p_.cfg.handshake_timeout_ms};
    bool full = false;
    if (p_.admit(addr_, now, &retry_at_, queued_, &full)) {
        leave_queue();
        holds_handshake_ = true;
        phase_ = Phase::Handshake;
        started_ = now;  // the handshake timeout runs from admission
    } else if (now - started_ >= max_wait) {
        leave_queue();
        drop(SL_LOG_WARN, "refused: no handshake slot free within " + secs(static_cast<unsigned>(max_wait)) + " (" +
                              std::to_string(p_.handshakes.load()) + " handshakes in progress)");
    } else if (full && !queued_) {
        queued_ = true;
        p_.waiting.fetch_add(1);
    }
    set_deadline(now);
}

void Session::leave_queue() noexcept {
    if (queued_) p_.waiting.fetch_sub(1);
    queued_ = false;
}

void Session::authenticate(int64_t now) {
    if (holds_handshake_) p_.release_handshake(addr_);
    holds_handshake_ = false;
    if (conn_.mode() == SL_MODE_USER_KEY) {  // PROTOCOL.md 15: only the keys listed get in
        user_ = p_.user_for(conn_.client_static());
        if (user_.empty()) {
            finish(SL_LOG_WARN, "refused: unknown user (key " + fingerprint_of(conn_.client_static()) + ")",
                   "unknown user", now);
            return;
        }
        peer_ = user_ + "@" + peer_;  // every later line of the session names the user
    }
    if (!p_.take_session()) {
        finish(SL_LOG_WARN, "refused: server full (" + std::to_string(p_.cfg.max_clients) + " clients)",
               "server full: try again later", now);
        return;
    }
    holds_session_ = true;
    phase_ = Phase::Open;
    if (p_.logs(SL_LOG_INFO)) {
        // Which key file matched (key rotation, PROTOCOL.md 12): its name, never the key.
        const int k = conn_.key_index();
        std::string key = k >= 0 && static_cast<size_t>(k) < p_.key_names.size() ? " (key " + p_.key_names[k] + ")" : "";
        if (conn_.mode() != SL_MODE_PSK) key += std::string(" (mode ") + sl_mode_name(conn_.mode()) + ")";
        p_.log(SL_LOG_INFO, "[INFO] " + peer_ + " handshake complete" + key);
    }
    if (chat_) {
        chat_->account = user_;
        chat_->peer = peer_;  // with the user's name, if any
        p_.chat->enter(*chat_, now);
    }
}

// PROTOCOL.md 16: the AUTH of a mode-4 client. The password is never logged.
void Session::login(const sl_event &ev, int64_t now) {
    const size_t n = ev.data[0];
    const std::string name(reinterpret_cast<const char *>(ev.data) + 1, n);
    bool valid = true;
    for (char c : name) valid = valid && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
    const std::string who = valid ? name : "(not a valid name)";
    if (p_.locked_out(name, addr_, now)) {
        finish(SL_LOG_WARN, "refused: too many failed attempts (user " + who + " or address " + addr_ + "); not checked",
               "too many failed attempts: try again later", now);
        return;
    }
    if (!valid) {
        p_.login_result(name, addr_, false, now);
        finish(SL_LOG_WARN, "refused: wrong user or password (user " + who + ")", "wrong user or password", now);
        return;
    }
    // scrypt runs on the checker's threads: this session waits, the others on this thread go on.
    auto check = std::make_shared<PasswordCheck>();
    check->name = name;
    check->password.assign(ev.data + 1 + n, ev.data + ev.len);
    check->wake = wake_;
    check->wake_ud = wake_ud_;
    if (!p_.checker.submit(check)) {
        finish(SL_LOG_WARN, "refused: " + std::to_string(Checker::kQueue) + " password checks waiting (user " + who +
                                "); not checked",
               "server busy: try again later", now);
        return;
    }
    check_ = std::move(check);
}

void Session::take_verdict(int64_t now) {
    bool ok = false;
    {
        std::lock_guard<std::mutex> lock(check_->mu);
        if (!check_->done) return;
        ok = check_->ok;
    }
    const std::string name = check_->name;
    check_.reset();
    p_.login_result(name, addr_, ok, now);
    if (!ok) {
        finish(SL_LOG_WARN, "refused: wrong user or password (user " + name + ")", "wrong user or password", now);
        set_deadline(now);
        return;
    }
    user_ = name;
    peer_ = user_ + "@" + peer_;  // every later line of the session names the user
    authenticate(now);
    if (status_ != SL_SESSION_CLOSED) account();
    set_deadline(now);
}

bool Session::wants_read() const noexcept {
    if (phase_ == Phase::Lingering) return true;
    return status_ == SL_SESSION_OPEN && (phase_ == Phase::Handshake || phase_ == Phase::Open) && !awaiting_reply_ &&
           !check_ &&
           conn_.pending_size() <= kHighWater;
}

void Session::set_deadline(int64_t now) noexcept {
    const auto &c = p_.cfg;
    int64_t d = INT64_MAX;
    switch (phase_) {
    case Phase::Waiting: d = std::min<int64_t>(retry_at_, started_ + 2 * int64_t{c.handshake_timeout_ms}); break;
    case Phase::Handshake: d = started_ + c.handshake_timeout_ms; break;
    case Phase::Open:
        d = last_active_ + c.idle_timeout_ms;
        if (!trimmed_) d = std::min(d, last_active_ + kTrimAfterMs);
        break;
    case Phase::Closing: d = grace_end_; break;
    case Phase::Lingering: d = linger_end_; break;
    case Phase::Closed: d = INT64_MAX; break;
    }
    if (frame_started_ >= 0 && (phase_ == Phase::Handshake || phase_ == Phase::Open))
        d = std::min<int64_t>(d, frame_started_ + c.frame_timeout_ms);
    deadline_ = std::max(d, now);
}

// Re-charges the budget with what the session holds now: its buffers, the rest of the frame it
// is receiving (charged in full when announced, so a slow sender cannot outgrow the budget) and
// raw output. Only the announcement of a frame can be refused (`limit`); the rest is a fact.
void Session::account() noexcept {
    const size_t now_held = conn_.buffered_bytes() + conn_.incoming_frame_remaining() + raw_.size() + files_.buffered();
    if (now_held == charged_) return;  // the usual case: no shared counter touched per message
    p_.charge(static_cast<int64_t>(now_held) - static_cast<int64_t>(charged_), SIZE_MAX);
    charged_ = now_held;
}

int Session::feed(const uint8_t *data, size_t len, int64_t now, size_t *consumed, const uint8_t **msg,
                  size_t *msg_len) {
    *consumed = 0;
    *msg = nullptr;
    *msg_len = 0;
    if (awaiting_reply_ || phase_ == Phase::Waiting || check_) return SL_ESTATE;
    if (status_ != SL_SESSION_OPEN) {  // closing: nothing more counts
        *consumed = len;
        if (phase_ == Phase::Lingering && (lingered_ += len) > kLingerBytes) drop(level_, reason_);
        return SL_OK;
    }
    if (first_bytes_ && len > 0) {
        first_bytes_ = false;
        if (p_.cfg.tls == 0 && len >= 2 && data[0] == 0x16 && data[1] == 0x03) {
            *consumed = len;
            drop(SL_LOG_WARN, "client is speaking TLS but this server does not use TLS");
            return SL_OK;
        }
    }
    last_active_ = now;
    trimmed_ = false;
    size_t off = 0;
    while (off < len && status_ == SL_SESSION_OPEN) {
        size_t used = 0;
        sl_event ev{};
        const bool was_confirmed = conn_.peer_confirmed(), was_established = conn_.established();
        int rc = conn_.feed(data + off, len - off, &used, &ev);
        if (rc == SL_EBAD_VERSION) {
            // PROTOCOL.md 14.2: say which modes this server accepts, then close.
            raw_ = p_.modes_frame;
            raw_pos_ = 0;
            std::string accepted;
            for (int m = 1; m < 32; ++m)
                if (p_.cfg.modes & (1u << m)) accepted += std::string(accepted.empty() ? "" : ", ") + sl_mode_name(m);
            finish(SL_LOG_WARN, "handshake failed: " + errtext(rc) + " (this server accepts: " + accepted + ")", nullptr,
                   now);
            off = len;
            break;
        }
        if (rc != SL_OK) {
            std::string why = (was_established ? "protocol error: " : "handshake failed: ") + errtext(rc);
            // Replies to the messages before the bad frame still go out (PROTOCOL.md 7).
            if (conn_.pending_size() > 0) finish(SL_LOG_WARN, std::move(why), nullptr, now);
            else drop(SL_LOG_WARN, std::move(why));
            off = len;
            break;
        }
        off += used;
        const bool confirming = !was_confirmed && conn_.peer_confirmed();
        if (confirming && conn_.mode() == SL_MODE_PASSWORD) {  // the engine let only a well-formed AUTH through
            login(ev, now);
            if (check_) break;  // the rest waits for the verdict (the driver keeps it)
            continue;
        }
        if (confirming) authenticate(now);
        if (ev.type != SL_EVENT_MESSAGE || status_ != SL_SESSION_OPEN) continue;
        // The key-confirmation PING (PROTOCOL.md 4.1) is part of the handshake, not a message.
        if (confirming && ev.msg_type == SL_MSG_PING && ev.len == 0) continue;
        on_message(ev, now, msg, msg_len);
        if (*msg != nullptr) break;  // the driver answers before feeding more
        if (chat_) pump(now);  // its own lines out at once: one long read must not fill its queue
    }
    *consumed = off;
    if (status_ == SL_SESSION_OPEN) {
        const size_t incoming = conn_.incoming_frame_size();
        if (incoming == 0) {
            frame_started_ = -1;
        } else if (frame_started_ < 0) {
            frame_started_ = now;
            // A frame's announced size is charged in full now: refuse what cannot fit. Large
            // frames may not use the last eighth, which keeps room for small ones.
            const size_t rest = conn_.incoming_frame_remaining();
            const size_t budget = p_.cfg.max_memory;
            const size_t limit = incoming <= kSmallFrame ? budget : budget - budget / 8;
            if (!p_.charge(static_cast<int64_t>(rest), limit)) {
                drop(SL_LOG_WARN, "frame of " + bytes(incoming) + " refused: the memory budget (" + mib(budget) +
                                      ") is in use");
            } else {
                charged_ += rest;
                // Charged in full: allocate it once, exactly, rather than growing (and copying,
                // and leaving freed blocks behind) as the bytes arrive.
                if (incoming > kSmallFrame && !conn_.reserve_incoming()) drop(SL_LOG_WARN, "out of memory");
            }
        }
    }
    if (chat_) pump(now);  // lines this session queued for itself
    if (status_ != SL_SESSION_CLOSED) account();
    set_deadline(now);
    return SL_OK;
}

void Session::on_message(const sl_event &ev, int64_t now, const uint8_t **msg, size_t *msg_len) {
    const bool msg_log = p_.logs(SL_LOG_MSG);
    switch (ev.msg_type) {
    case SL_MSG_CLOSE: {
        std::string why = "client closed the session";
        if (ev.len != 0) why += " (" + shown(ev.data, ev.len) + ")";
        finish(SL_LOG_INFO, std::move(why), nullptr, now);
        return;
    }
    case SL_MSG_PING:
        if (msg_log) {
            p_.log(SL_LOG_MSG, "[RECV] " + peer_ + " PING (" + bytes(ev.len) + ")");
            p_.log(SL_LOG_MSG, "[SEND] " + peer_ + " PONG (" + bytes(ev.len) + ")");  // queued by the engine
        }
        return;
    case SL_MSG_PONG:
        if (msg_log) p_.log(SL_LOG_MSG, "[RECV] " + peer_ + " PONG (" + bytes(ev.len) + ")");
        return;
    case SL_MSG_EOF:  // PROTOCOL.md 9: the client sends no more requests
        if (msg_log) p_.log(SL_LOG_MSG, "[RECV] " + peer_ + " EOF");
        // Every reply is already queued (they go out in order), so a request/reply server's
        // output ends here too; a stream driver ends its own when its input does.
        if (!p_.cfg.stream) send_eof(now);
        return;
    default:
        if (is_file_msg(ev.msg_type)) return on_file(ev, now);
        break;
    }
    const uint64_t seq = ++recv_seq_;
    if (chat_) {
        if (msg_log)
            p_.log(SL_LOG_MSG, "[RECV] " + peer_ + " #" + std::to_string(seq) + " " + chat_->name + "@" +
                                   (chat_->room.empty() ? "-" : chat_->room) + " " + shown(ev.data, ev.len) + " (" +
                                   bytes(ev.len) + ")");
        if (!p_.chat->line(*chat_, ev.data, ev.len, now)) {
            pump(now);  // what it was sent before it left, then CLOSE "bye"
            finish(SL_LOG_INFO, "client left the chat (/quit)", "bye", now);
        }
        return;
    }
    if (msg_log)
        p_.log(SL_LOG_MSG, "[RECV] " + peer_ + " #" + std::to_string(seq) + " " + shown(ev.data, ev.len) + " (" +
                               bytes(ev.len) + ")");
    if (p_.cfg.handler != nullptr || p_.cfg.stream) {
        *msg = ev.data;
        *msg_len = ev.len;
        awaiting_reply_ = true;
        return;
    }
    if (p_.cfg.echo) {
        send_reply(ev.data, ev.len, now);
        return;
    }
    char ack[64];
    int n = std::snprintf(ack, sizeof ack, "ACK: received %zu bytes", ev.len);
    send_reply(reinterpret_cast<const uint8_t *>(ack), static_cast<size_t>(n), now);
}

void Session::on_file(const sl_event &ev, int64_t now) {
    FileReply r;
    std::string line;
    bool warn = false;
    if (!files_.on_message(ev.msg_type, ev.data, ev.len, &r, &line, &warn)) {
        files_.end();
        finish(SL_LOG_WARN, "protocol error: " + errtext(SL_EBAD_FILE_MSG) + " (" + line + ")", "protocol error: bad file message",
               now);
        return;
    }
    if (!line.empty() && p_.logs(warn ? SL_LOG_WARN : SL_LOG_INFO))
        p_.log(warn ? SL_LOG_WARN : SL_LOG_INFO, std::string(warn ? "[WARN] " : "[INFO] ") + peer_ + " " + line);
    if (r.type != 0) send_reply(r.data, r.len, now, r.type);
}

int Session::send_reply(const uint8_t *data, size_t len, int64_t now, int type) {
    // The reply's frame is charged before it is built; a reply that cannot fit is refused.
    const size_t need = len + SL_OVERHEAD_BYTES;
    if (len > kSmallFrame && !p_.charge(static_cast<int64_t>(need), p_.cfg.max_memory)) {
        finish(SL_LOG_WARN, "reply of " + bytes(len) + " refused: the memory budget (" + mib(p_.cfg.max_memory) +
                                ") is in use",
               "server busy: try again later", now);
        return SL_OK;
    }
    if (len > kSmallFrame) charged_ += need;
    const bool msg_log = p_.logs(SL_LOG_MSG) && type == SL_MSG_DATA;  // file transfers log one line each
    std::string reply_shown = msg_log ? shown(data, len) : std::string();  // before send reuses buffers
    int rc = conn_.send(type, data, len);
    if (rc != SL_OK) {
        drop(SL_LOG_WARN, "reply refused: " + errtext(rc));
        account();
        return SL_OK;
    }
    if (type != SL_MSG_DATA) {
        account();
        return SL_OK;
    }
    ++send_seq_;
    if (msg_log)
        p_.log(SL_LOG_MSG,
               "[SEND] " + peer_ + " #" + std::to_string(send_seq_) + " " + reply_shown + " (a reply of " + bytes(len) + ")");
    account();
    return SL_OK;
}

int Session::reply(const uint8_t *data, size_t len, int64_t now) {
    if (!awaiting_reply_) return SL_ESTATE;
    awaiting_reply_ = false;
    // A stream driver's empty reply only says it has taken the message (PROTOCOL.md 9).
    if (status_ == SL_SESSION_OPEN && !(p_.cfg.stream && len == 0)) send_reply(data, len, now);
    set_deadline(now);
    return SL_OK;
}

bool Session::can_send() const noexcept {
    return status_ == SL_SESSION_OPEN && phase_ == Phase::Open && !conn_.sent_eof() &&
           conn_.pending_size() <= kHighWater;
}

int Session::send(const uint8_t *data, size_t len, int64_t now) {
    if (!p_.cfg.stream || phase_ != Phase::Open || status_ != SL_SESSION_OPEN || conn_.sent_eof()) return SL_ESTATE;
    send_reply(data, len, now);
    set_deadline(now);
    return SL_OK;
}

int Session::send_eof(int64_t now) {
    if (phase_ != Phase::Open || status_ != SL_SESSION_OPEN || conn_.sent_eof()) return SL_ESTATE;
    int rc = conn_.send(SL_MSG_EOF, nullptr, 0);
    if (rc != SL_OK) {
        drop(SL_LOG_WARN, "EOF refused: " + errtext(rc));
    } else if (p_.logs(SL_LOG_MSG)) {
        p_.log(SL_LOG_MSG, "[SEND] " + peer_ + " EOF");
    }
    account();
    set_deadline(now);
    return SL_OK;
}

int Session::fail_stream(const std::string &why, int64_t now) {
    awaiting_reply_ = false;
    finish(SL_LOG_WARN, why, why.c_str(), now);  // the driver's words (a tunnel's target), no content
    set_deadline(now);
    return SL_OK;
}

int Session::reply_failed(const std::string &why, int64_t now) {
    if (!awaiting_reply_) return SL_ESTATE;
    awaiting_reply_ = false;
    // What a failing handler says is its reason, for the log only (never sent).
    std::string reason = "the message handler failed";
    if (!why.empty()) reason += ": " + shown(reinterpret_cast<const uint8_t *>(why.data()), why.size());
    finish(SL_LOG_WARN, std::move(reason), "server error", now);
    set_deadline(now);
    return SL_OK;
}

void Session::consume(size_t n, int64_t now) {
    if (!raw_.empty()) {
        raw_pos_ += std::min(n, raw_.size() - raw_pos_);
    } else {
        conn_.consume(n);
    }
    linger_if_flushed(now);
    if (chat_ && guard([&] {  // room in the output: lines waiting for it move in
            pump(now);
            return SL_OK;
        }) != SL_OK)
        fail();
}

void Session::set_wake(sl_wake_fn wake, void *ud) noexcept {
    wake_ = wake;
    wake_ud_ = ud;
    if (!chat_) return;
    chat_->wake = wake;
    chat_->wake_ud = ud;
}

void Session::pump(int64_t now) {
    if (check_) take_verdict(now);
    if (!chat_ || phase_ != Phase::Open || status_ != SL_SESSION_OPEN) return;
    const size_t pending = conn_.pending_size();
    if (pending > kHighWater) return;  // backpressure: consume() pumps again
    std::deque<Line> lines;
    size_t overflowed = 0;
    p_.chat->take(*chat_, kHighWater + 1 - pending, &lines, &overflowed);
    for (const Line &l : lines) {
        int rc = conn_.send(SL_MSG_DATA, reinterpret_cast<const uint8_t *>(l->data()), l->size());
        if (rc != SL_OK) {
            drop(SL_LOG_WARN, "chat line refused: " + errtext(rc));
            break;
        }
        ++send_seq_;
    }
    if (overflowed > 0 && status_ == SL_SESSION_OPEN) {
        const std::string limit = std::to_string(p_.cfg.chat_queue);
        finish(SL_LOG_WARN, "chat: too slow (more than " + limit + " lines waiting, " + std::to_string(overflowed) +
                                " dropped)",
               ("CHAT_SLOW: more than " + limit + " lines were waiting for you").c_str(), now);
    }
    if (status_ != SL_SESSION_CLOSED) account();
    set_deadline(now);
}

void Session::leave_chat() noexcept {
    if (chat_ && chat_->entered) p_.chat->leave(*chat_);
    else if (chat_) chat_->wake = nullptr;
}

void Session::finish(int level, std::string reason, const char *close_reason, int64_t now) {
    if (closing() || phase_ == Phase::Closed) return;
    leave_chat();
    phase_ = Phase::Closing;
    status_ = SL_SESSION_CLOSING;
    level_ = level;
    reason_ = std::move(reason);
    grace_end_ = now + kCloseGraceMs;
    if (close_reason != nullptr && conn_.established() && !conn_.closed())
        conn_.send(SL_MSG_CLOSE, reinterpret_cast<const uint8_t *>(close_reason), std::strlen(close_reason));
    linger_if_flushed(now);
    set_deadline(now);
}

void Session::linger_if_flushed(int64_t now) noexcept {
    if (phase_ != Phase::Closing || pending_size() != 0) return;
    phase_ = Phase::Lingering;
    linger_end_ = now + kLingerMs;
    set_deadline(now);
}

void Session::drop(int level, std::string reason) {
    if (phase_ == Phase::Closed) return;
    leave_chat();
    phase_ = Phase::Closed;
    status_ = SL_SESSION_CLOSED;
    level_ = level;
    reason_ = std::move(reason);
    deadline_ = INT64_MAX;
}

void Session::tick(int64_t now) {
    const auto &c = p_.cfg;
    switch (phase_) {
    case Phase::Waiting:
        if (now >= retry_at_ || now - started_ >= 2 * int64_t{c.handshake_timeout_ms}) try_admit(now);
        return;
    case Phase::Closing:
        if (now >= grace_end_) drop(level_, reason_);  // the client is not reading: give up on it
        return;
    case Phase::Lingering:
        if (now >= linger_end_) drop(level_, reason_);  // no EOF from the client: close anyway
        return;
    case Phase::Closed: return;
    default: break;
    }
    if (frame_started_ >= 0 && now - frame_started_ >= c.frame_timeout_ms) {
        finish(SL_LOG_WARN, "frame not completed within " + secs(c.frame_timeout_ms), "frame timeout", now);
    } else if (phase_ == Phase::Handshake && now - started_ >= c.handshake_timeout_ms) {
        drop(SL_LOG_WARN, "handshake timed out after " + secs(c.handshake_timeout_ms));
    } else if (phase_ == Phase::Open && now - last_active_ >= c.idle_timeout_ms) {
        finish(SL_LOG_INFO, "idle for " + secs(c.idle_timeout_ms), "idle timeout", now);
    } else if (phase_ == Phase::Open && !trimmed_ && now - last_active_ >= kTrimAfterMs &&
               conn_.pending_size() == 0 && !awaiting_reply_) {
        conn_.trim();  // a quiet session keeps no message-sized buffers
        files_.trim();
        trimmed_ = true;
        account();
    }
    set_deadline(now);
}

void Session::feed_eof(int64_t now) {
    (void)now;
    if (closing()) {
        drop(level_, reason_);
        return;
    }
    if (phase_ == Phase::Closed) return;
    if (conn_.feed_eof() == SL_ETRUNCATED) drop(SL_LOG_WARN, "connection lost in the middle of a frame (TRUNCATED)");
    else if (phase_ != Phase::Open) drop(SL_LOG_WARN, "connection closed during the handshake");
    else drop(SL_LOG_INFO, "connection lost (no CLOSE from the client)");
}

void Session::io_error(int err, bool writing, int64_t now) {
    (void)now;
    if (closing()) drop(level_, reason_);  // the reason it was closing for stays the reason
    else if (!writing) drop(SL_LOG_WARN, "connection error: " + errtext(err));
    else drop(SL_LOG_INFO, "connection lost while sending (client went away)");
}

bool Session::tls_check(const uint8_t *data, size_t len, int64_t now) {
    if (len == 0 || data[0] == 0x16) return false;
    first_bytes_ = false;
    raw_.assign(kTlsAlert, sizeof kTlsAlert - 1);
    raw_pos_ = 0;
    finish(SL_LOG_WARN, "client is not using TLS (plain seclink/1?) but this server requires TLS", nullptr, now);
    return true;
}

void Session::tls_failed(const char *detail, int64_t now) {
    (void)now;
    drop(SL_LOG_WARN, std::string("TLS handshake failed: ") + (detail != nullptr && *detail ? detail : "connection closed"));
}

void Session::shutdown(int64_t now) {
    if (phase_ == Phase::Open) finish(SL_LOG_INFO, "server shutting down", "server shutting down", now);
    else if (!closing()) drop(SL_LOG_INFO, "server shutting down");
}

void Session::fail() noexcept {
    leave_chat();
    phase_ = Phase::Closed;
    status_ = SL_SESSION_CLOSED;
    awaiting_reply_ = false;
    level_ = SL_LOG_WARN;
    guard([&] {
        reason_ = "out of memory";
        return SL_OK;
    });
}

void Session::close() noexcept {
    if (closed_) return;
    closed_ = true;
    if (check_) {  // the checker must not wake a session that is gone
        std::lock_guard<std::mutex> lock(check_->mu);
        check_->cancelled = true;
    }
    files_.end();
    leave_chat();
    leave_queue();
    if (holds_handshake_) p_.release_handshake(addr_);
    if (holds_session_) p_.release_session();
    if (counted_) p_.connections.fetch_sub(1);
    counted_ = false;
    holds_handshake_ = holds_session_ = false;
    p_.charge(-static_cast<int64_t>(charged_), SIZE_MAX);
    charged_ = 0;
    if (reason_.empty()) reason_ = "connection closed";
    guard([&] {  // out of memory for the line: the session still ends
        if (p_.logs(level_))
            p_.log(level_, std::string(level_ == SL_LOG_WARN ? "[WARN] " : "[INFO] ") + peer_ + " disconnected: " + reason_);
        return SL_OK;
    });
}

}  // namespace seclink::detail

// ---------------------------------------------------------------------------------------- C ABI

using seclink::detail::Policy;
using seclink::detail::Session;

struct sl_policy {
    Policy impl;
    explicit sl_policy(const sl_server_config &cfg) : impl(cfg) {}
};
struct sl_session {
    Session impl;
    sl_session(Policy &p, const char *peer, int64_t now) : impl(p, peer, now) {}
};

namespace {

// A call that cannot report an error: out of memory closes the session rather than the process.
template <class F>
void or_drop(sl_session *s, F &&f) noexcept {
    if (s == nullptr) return;
    if (seclink::detail::guard([&] {
            f();
            return SL_OK;
        }) != SL_OK) {
        s->impl.fail();
    }
}

}  // namespace

extern "C" {

unsigned sl_server_default_threads(void) {
    unsigned cpus = 0;
#if defined(__linux__)
    cpu_set_t set;  // the CPUs this process may use (a container's or taskset's limit), not all
    if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = static_cast<unsigned>(CPU_COUNT(&set));
#endif
    if (cpus == 0) cpus = std::thread::hardware_concurrency();
    return seclink::detail::default_threads(cpus);
}

int sl_policy_new(sl_policy **out, const sl_server_config *cfg) {
    if (out == nullptr) return SL_EINVAL;
    *out = nullptr;
    if (cfg == nullptr) return SL_EINVAL;
    return seclink::detail::guard([&]() -> int {
        const int rc = seclink::detail::check_server_config(*cfg);
        if (rc != SL_OK) return rc;
        auto p = std::make_unique<sl_policy>(*cfg);
        if (cfg->files_dir != nullptr && p->impl.files.dirfd < 0) return static_cast<int>(SL_EIO);  // not a directory
        if (p->impl.chat && !p->impl.chat->ok()) return p->impl.chat->error();  // the cluster URL
        *out = p.release();
        return SL_OK;
    });
}

void sl_policy_free(sl_policy *policy) { delete policy; }

size_t sl_policy_sessions(const sl_policy *p) { return p != nullptr ? p->impl.sessions.load() : 0; }
size_t sl_policy_connections(const sl_policy *p) { return p != nullptr ? p->impl.connections.load() : 0; }
size_t sl_policy_handshakes(const sl_policy *p) { return p != nullptr ? p->impl.handshakes.load() : 0; }
size_t sl_policy_memory(const sl_policy *p) { return p != nullptr ? p->impl.memory.load() : 0; }

void sl_policy_out_of_fds(sl_policy *p) {
    if (p != nullptr) p->impl.out_of_fds();
}

int sl_session_new(sl_session **out, sl_policy *policy, const char *peer, int64_t now_ms) {
    if (out == nullptr) return SL_EINVAL;
    *out = nullptr;
    if (policy == nullptr || peer == nullptr) return SL_EINVAL;
    return seclink::detail::guard([&] {
        auto s = std::make_unique<sl_session>(policy->impl, peer, now_ms);
        if (!s->impl.ok()) return SL_ECRYPTO;
        *out = s.release();
        return SL_OK;
    });
}

void sl_session_free(sl_session *s) { delete s; }

int sl_session_feed(sl_session *s, const uint8_t *data, size_t len, int64_t now_ms, size_t *consumed,
                    const uint8_t **msg, size_t *msg_len) {
    if (s == nullptr || consumed == nullptr || msg == nullptr || msg_len == nullptr || (data == nullptr && len != 0))
        return SL_EINVAL;
    int rc = seclink::detail::guard([&] { return s->impl.feed(data, len, now_ms, consumed, msg, msg_len); });
    if (rc == SL_ENOMEM || rc == SL_EINTERNAL) {
        *consumed = len;
        s->impl.fail();
    }
    return rc;
}

void sl_session_feed_eof(sl_session *s, int64_t now_ms) { or_drop(s, [&] { s->impl.feed_eof(now_ms); }); }

int sl_session_reply(sl_session *s, const uint8_t *data, size_t len, int64_t now_ms) {
    if (s == nullptr || (data == nullptr && len != 0)) return SL_EINVAL;
    int rc = seclink::detail::guard([&] { return s->impl.reply(data, len, now_ms); });
    if (rc == SL_ENOMEM || rc == SL_EINTERNAL) s->impl.fail();
    return rc;
}

int sl_session_send(sl_session *s, const uint8_t *data, size_t len, int64_t now_ms) {
    if (s == nullptr || (data == nullptr && len != 0)) return SL_EINVAL;
    int rc = seclink::detail::guard([&] { return s->impl.send(data, len, now_ms); });
    if (rc == SL_ENOMEM || rc == SL_EINTERNAL) s->impl.fail();
    return rc;
}

int sl_session_send_eof(sl_session *s, int64_t now_ms) {
    if (s == nullptr) return SL_EINVAL;
    int rc = seclink::detail::guard([&] { return s->impl.send_eof(now_ms); });
    if (rc == SL_ENOMEM || rc == SL_EINTERNAL) s->impl.fail();
    return rc;
}

int sl_session_fail(sl_session *s, const char *why, int64_t now_ms) {
    if (s == nullptr) return SL_EINVAL;
    int rc = seclink::detail::guard([&] { return s->impl.fail_stream(why != nullptr ? why : "", now_ms); });
    if (rc == SL_ENOMEM || rc == SL_EINTERNAL) s->impl.fail();
    return rc;
}

int sl_session_can_send(const sl_session *s) { return s != nullptr && s->impl.can_send(); }
int sl_session_peer_eof(const sl_session *s) { return s != nullptr && s->impl.peer_eof(); }

int sl_session_reply_failed(sl_session *s, const char *why, int64_t now_ms) {
    if (s == nullptr) return SL_EINVAL;
    int rc = seclink::detail::guard([&] { return s->impl.reply_failed(why != nullptr ? why : "", now_ms); });
    if (rc == SL_ENOMEM || rc == SL_EINTERNAL) s->impl.fail();
    return rc;
}

int sl_session_pending(const sl_session *s, const uint8_t **data, size_t *len) {
    if (s == nullptr || data == nullptr || len == nullptr) return SL_EINVAL;
    *data = s->impl.pending();
    *len = s->impl.pending_size();
    return SL_OK;
}

int sl_session_consume(sl_session *s, size_t n, int64_t now_ms) {
    if (s == nullptr || n > s->impl.pending_size()) return SL_EINVAL;
    s->impl.consume(n, now_ms);
    return SL_OK;
}

int sl_session_status(const sl_session *s) { return s != nullptr ? s->impl.status() : SL_SESSION_CLOSED; }
int sl_session_wants_read(const sl_session *s) { return s != nullptr && s->impl.wants_read(); }
int64_t sl_session_deadline(const sl_session *s) { return s != nullptr ? s->impl.deadline() : INT64_MAX; }
void sl_session_tick(sl_session *s, int64_t now_ms) { or_drop(s, [&] { s->impl.tick(now_ms); }); }

void sl_session_io_error(sl_session *s, int err, int writing, int64_t now_ms) {
    or_drop(s, [&] { s->impl.io_error(err, writing != 0, now_ms); });
}

int sl_session_tls_check(sl_session *s, const uint8_t *data, size_t len, int64_t now_ms) {
    if (s == nullptr || (data == nullptr && len != 0)) return 0;
    int plain = 0;
    or_drop(s, [&] { plain = s->impl.tls_check(data, len, now_ms) ? 1 : 0; });
    return plain;
}

void sl_session_tls_failed(sl_session *s, const char *detail, int64_t now_ms) {
    or_drop(s, [&] { s->impl.tls_failed(detail, now_ms); });
}

void sl_session_shutdown(sl_session *s, int64_t now_ms) { or_drop(s, [&] { s->impl.shutdown(now_ms); }); }

void sl_session_close(sl_session *s) {
    if (s != nullptr) s->impl.close();
}

const char *sl_session_peer(const sl_session *s) { return s != nullptr ? s->impl.peer().c_str() : ""; }

void sl_session_set_wake(sl_session *s, sl_wake_fn wake, void *ud) {
    if (s != nullptr) s->impl.set_wake(wake, ud);
}

void sl_session_pump(sl_session *s, int64_t now_ms) { or_drop(s, [&] { s->impl.pump(now_ms); }); }

int sl_session_busy(const sl_session *s) { return s != nullptr && s->impl.busy(); }

const char *sl_session_user(const sl_session *s) { return s != nullptr ? s->impl.user().c_str() : ""; }

int sl_policy_reload_users(sl_policy *p) {
    if (p == nullptr) return SL_EINVAL;
    return seclink::detail::guard([&] { return p->impl.reload_users(); });
}

}  // extern "C"
