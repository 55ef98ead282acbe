// session.hpp - the session layer: everything a server decides about its connections, sans I/O
// (seclink.h, "the session layer"). Policy is server-wide and thread-safe; Session wraps one
// engine Connection and is used by one thread at a time. The epoll server and seclink.aio drive
// these and do nothing else of their own: same admission, limits, deadlines and log lines.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "chat.hpp"
#include "crypto.hpp"
#include "engine.hpp"
#include "files.hpp"
#include "seclink/seclink.h"
#include "secure_mem.hpp"

namespace seclink::detail {

inline constexpr size_t kHighWater = 1024 * 1024;  // queued output before reading pauses
inline constexpr int64_t kCloseGraceMs = 2000;     // time to flush a CLOSE before dropping
// Lingering close: once a closing session's output is flushed (and the driver has shut down its
// writing side), what the client still sends is read and discarded until its EOF, for at most
// this long and this much; closing with unread input would reset the connection and destroy the
// CLOSE the client has not yet read (the way HTTP servers close).
inline constexpr int64_t kLingerMs = 2000;
inline constexpr size_t kLingerBytes = 256 * 1024;
inline constexpr int64_t kTrimAfterMs = 1000;      // quiet this long: give message buffers back
inline constexpr int64_t kAdmitPollMs = 10;        // a session waiting for a slot looks again
inline constexpr size_t kSmallFrame = 64 * 1024;   // frames this small may use the last eighth

// Fills the defaults of every 0 field that has one (the sl_server_config_init values).
void apply_server_defaults(sl_server_config &cfg) noexcept;
// The default worker count (sl_server_default_threads) for a process that may run on `cpus` CPUs.
unsigned default_threads(unsigned cpus) noexcept;

// What sl_server_new and sl_policy_new refuse: SL_EINVAL for a field out of range, and the
// errors of reading the authorized-keys and users files (read here once, so a bad file is an
// error at start). May throw bad_alloc.
int check_server_config(const sl_server_config &cfg);

class Policy;

// A password check (PROTOCOL.md 16: scrypt, about 0.1 s) runs on the policy's checker threads,
// never on a driver's: the session waits (sl_session_busy), the checker wakes it through its wake
// function, and the session takes the verdict in pump(). Shared by the session and the checker;
// a session that closes first cancels it (no wake after that).
struct PasswordCheck {
    std::mutex mu;
    bool done = false, ok = false, cancelled = false;
    sl_wake_fn wake = nullptr;
    void *wake_ud = nullptr;
    std::string name;
    std::vector<uint8_t> password;  // wiped when the check goes
    PasswordCheck() = default;
    PasswordCheck(const PasswordCheck &) = delete;
    PasswordCheck &operator=(const PasswordCheck &) = delete;
    ~PasswordCheck();
};

// A few threads and a bounded queue for password checks; started at the first check.
class Checker {
public:
    static constexpr unsigned kThreads = 2;
    static constexpr size_t kQueue = 32;  // checks waiting; more are refused ("server busy")
    explicit Checker(Policy &p) : p_(p) {}
    ~Checker();
    bool submit(std::shared_ptr<PasswordCheck> check);  // false: the queue is full
private:
    void run();
    Policy &p_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<PasswordCheck>> queue_;
    std::vector<std::thread> threads_;
    bool stop_ = false;
};

class Policy {
public:
    // cfg.psk is copied into `psk` and the copy in `cfg` cleared.
    explicit Policy(const sl_server_config &cfg);
    ~Policy();
    Policy(const Policy &) = delete;
    Policy &operator=(const Policy &) = delete;

    bool logs(int level) const noexcept { return cfg.log != nullptr && level <= cfg.log_level; }
    void log(int level, const std::string &line) noexcept;
    // The acceptor ran out of file descriptors and closed a connection at once.
    void out_of_fds() noexcept;

    // Admission of a pre-authentication session from `addr`: true once it holds a handshake
    // slot; else *retry_at says when to ask again.
    // Slots freed while sessions wait for one are theirs: a new session (`queued` false) does
    // not overtake them. *full says the session waits for a slot (not for its address's turn).
    bool admit(const std::string &addr, int64_t now, int64_t *retry_at, bool queued, bool *full);
    void release_handshake(const std::string &addr) noexcept;
    bool take_session() noexcept;  // an authenticated slot (max_clients)
    void release_session() noexcept { sessions.fetch_sub(1); }

    FilePolicy files;  // PROTOCOL.md 10 (files.dirfd -1: none served)

    // Changes the bytes charged to the budget by `delta`; a positive change is refused (false,
    // nothing charged) if it would pass `limit`.
    bool charge(int64_t delta, size_t limit) noexcept;

    sl_server_config cfg{};
    Secret<SL_KEY_BYTES> psk;  // dump-proof memory (secure_mem.hpp), wiped when the policy goes
    KeyRing keys;              // with several keys (key rotation): all of them, psk first
    std::vector<std::string> key_names;  // cfg.psk_names, if given
    Secret<SL_KEY_BYTES> static_key;     // cfg.server_key (PROTOCOL.md 14), if has_static_key
    bool has_static_key = false;
    std::string modes_frame;             // how a frame 1 in a mode not accepted is answered (14.2)

    // Key users (PROTOCOL.md 15): the name for a client key, "" if none; and re-reading the file.
    std::string user_for(const uint8_t pub[32]);
    int reload_users();
    // Password users (PROTOCOL.md 16) and the failed-attempt limits per user name and address.
    bool has_password_users() const noexcept { return !passwords_path_.empty(); }
    // Chat names are then the users' names, not chosen (PROTOCOL.md 11.1).
    bool has_accounts() const noexcept { return !users_path_.empty() || has_password_users(); }
    bool check_password(const std::string &name, const uint8_t *password, size_t len);
    bool locked_out(const std::string &name, const std::string &addr, int64_t now);
    void login_result(const std::string &name, const std::string &addr, bool ok, int64_t now);
    static constexpr unsigned kFreeFailures = 3;       // then refused...
    static constexpr int64_t kLockoutMs = 60000;       // ...for this long after the last failure
    std::atomic<size_t> sessions{0}, handshakes{0}, memory{0};
    std::atomic<size_t> connections{0};  // every session not yet closed, whatever its phase
    std::atomic<size_t> waiting{0};      // sessions waiting for a free handshake slot
    std::unique_ptr<Chat> chat;          // with cfg.chat: the rooms (chat.hpp)

private:
    struct Addr {
        unsigned pending = 0;  // handshake slots held
        double tokens = 0;     // handshake-rate bucket
        int64_t refilled = 0;
        bool seen = false;     // tokens and refilled are set
    };
    std::mutex mu_;  // guards addrs_ and the handshake count's check-then-take
    std::unordered_map<std::string, Addr> addrs_;
    std::mutex log_mu_;
    std::mutex users_mu_;
    std::string users_path_;
    std::vector<std::pair<std::string, std::array<uint8_t, 32>>> users_;
    std::string passwords_path_;
    std::vector<std::string> passwords_;
    struct Failures {
        unsigned count = 0;
        int64_t last = 0;
    };
    std::unordered_map<std::string, Failures> failures_;  // "u:NAME" and "a:ADDR", under users_mu_

public:
    Checker checker{*this};  // password checks; declared last, so its threads stop first
};

class Session {
public:
    Session(Policy &policy, std::string peer, int64_t now);
    ~Session() { close(); }
    Session(const Session &) = delete;
    Session &operator=(const Session &) = delete;

    int feed(const uint8_t *data, size_t len, int64_t now, size_t *consumed, const uint8_t **msg, size_t *msg_len);
    void feed_eof(int64_t now);
    int reply(const uint8_t *data, size_t len, int64_t now);
    int reply_failed(const std::string &why, int64_t now);
    // Stream mode (sl_server_config.stream): DATA and EOF of the driver's own (PROTOCOL.md 9).
    int send(const uint8_t *data, size_t len, int64_t now);
    int send_eof(int64_t now);
    int fail_stream(const std::string &why, int64_t now);
    bool can_send() const noexcept;
    bool peer_eof() const noexcept { return conn_.peer_eof(); }
    const uint8_t *pending() const noexcept {
        return raw_.empty() ? conn_.pending() : reinterpret_cast<const uint8_t *>(raw_.data()) + raw_pos_;
    }
    size_t pending_size() const noexcept { return raw_.empty() ? conn_.pending_size() : raw_.size() - raw_pos_; }
    void consume(size_t n, int64_t now);
    int status() const noexcept { return status_; }
    bool wants_read() const noexcept;
    int64_t deadline() const noexcept { return deadline_; }
    void tick(int64_t now);
    void io_error(int err, bool writing, int64_t now);
    bool tls_check(const uint8_t *data, size_t len, int64_t now);
    void tls_failed(const char *detail, int64_t now);
    void shutdown(int64_t now);
    void close() noexcept;
    // Out of memory (or a bug) in the middle of a call: the session closes at once.
    void fail() noexcept;
    const std::string &peer() const noexcept { return peer_; }
    const std::string &user() const noexcept { return user_; }
    bool ok() const noexcept { return setup_ok_; }
    // Chat servers (chat.hpp): who to wake when other sessions queue lines for this one, and
    // moving those lines into the output.
    void set_wake(sl_wake_fn wake, void *ud) noexcept;
    void pump(int64_t now);
    // A password check is running off this thread: feed nothing until the wake (and pump).
    bool busy() const noexcept { return check_ != nullptr; }

private:
    enum class Phase { Waiting, Handshake, Open, Closing, Lingering, Closed };

    void try_admit(int64_t now);
    void leave_queue() noexcept;
    void authenticate(int64_t now);
    void login(const sl_event &ev, int64_t now);
    void take_verdict(int64_t now);  // the password check's, once it is done
    void on_message(const sl_event &ev, int64_t now, const uint8_t **msg, size_t *msg_len);
    int send_reply(const uint8_t *data, size_t len, int64_t now, int type = SL_MSG_DATA);
    void on_file(const sl_event &ev, int64_t now);
    // Starts closing: queues CLOSE `close_reason` (if authenticated and it may still send),
    // then flushes; `level`/`reason` make the "disconnected" line.
    void finish(int level, std::string reason, const char *close_reason, int64_t now);
    void drop(int level, std::string reason);  // close at once
    void linger_if_flushed(int64_t now) noexcept;  // Closing with nothing pending: Lingering
    bool closing() const noexcept { return phase_ == Phase::Closing || phase_ == Phase::Lingering; }
    void leave_chat() noexcept;
    void account() noexcept;                    // re-charges what the session holds
    void set_deadline(int64_t now) noexcept;
    std::string shown(const uint8_t *data, size_t len) const;
    static void on_trace(void *ud, const sl_frame_info *f);

    Policy &p_;
    Connection conn_;
    std::string peer_, addr_, user_;
    Phase phase_ = Phase::Waiting;
    int status_ = SL_SESSION_OPEN;
    bool setup_ok_ = true;
    bool holds_handshake_ = false, holds_session_ = false, closed_ = false, counted_ = false, queued_ = false;
    bool awaiting_reply_ = false, first_bytes_ = true, trimmed_ = true;
    int64_t started_ = 0, last_active_ = 0, frame_started_ = -1, grace_end_ = 0, retry_at_ = 0, linger_end_ = 0;
    size_t lingered_ = 0;  // bytes discarded while lingering
    int64_t deadline_ = 0;
    size_t charged_ = 0;
    uint64_t recv_seq_ = 0, send_seq_ = 0;
    int level_ = SL_LOG_INFO;
    std::string reason_;
    FileTransfer files_{p_.files};
    std::string raw_;  // raw bytes to write instead of the engine's output (a TLS alert)
    size_t raw_pos_ = 0;
    std::unique_ptr<ChatMember> chat_;  // with a chat policy
    sl_wake_fn wake_ = nullptr;           // the driver's (set_wake)
    void *wake_ud_ = nullptr;
    std::shared_ptr<PasswordCheck> check_;  // while a password check runs
};

}  // namespace seclink::detail
