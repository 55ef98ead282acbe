// client - the seclink/1 client program: `./client 127.0.0.1 5000 "hello"`. See --help.
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <climits>

#include "common.hpp"
#include "identity.hpp"
#include "pipe.hpp"
#include "transfer.hpp"

namespace {

const char *kProg = "client";

struct Outcome {
    int code;
    std::string text;
};

// Turns an error from connecting into the exit code and the sentence the user sees.
Outcome connect_error(int rc, const std::string &where) {
    const std::string at = "cannot connect to " + where + ": ";
    switch (rc) {
    case SL_ETIMEDOUT: return {app::kNetwork, at + "no answer in time (is the host right, and a server running? see --timeout)"};
    case SL_EHANDSHAKE_AUTH:
        return {app::kHandshake, "handshake with " + where + " failed: the server uses a different pre-shared key "
                                 "(copy the server's key file here, or point --psk-file at it)"};
    case SL_EPEER_CLOSED:
    case SL_ETRUNCATED:
        return {app::kHandshake, "the server at " + where + " closed the connection during the handshake: it most likely "
                                 "uses a different pre-shared key (or it runs with --tls: then add --tls)"};
    default: break;
    }
    // The core's category says which exit code; before the session is up, a broken session is a
    // failed handshake.
    switch (sl_err_category(rc)) {
    case SL_CAT_NETWORK: return {app::kNetwork, at + app::describe(rc)};
    case SL_CAT_HANDSHAKE:
    case SL_CAT_SESSION: return {app::kHandshake, "handshake with " + where + " failed: " + app::describe(rc)};
    case SL_CAT_TLS: return {app::kTls, "TLS with " + where + " failed: " + app::describe(rc)};
    default: return {app::kInternal, at + app::describe(rc)};
    }
}

std::string shown(const uint8_t *data, size_t len) {
    char buf[256];
    sl_format_message(data, len, buf, sizeof buf);
    return buf;
}

class Session {
public:
    Session(sl_client *c, app::Logger &log, int timeout_ms, bool redact)
        : c_(c), log_(log), timeout_ms_(timeout_ms), redact_(redact) {}

    // Sends one message and prints its reply; exits on failure.
    void exchange(const std::string &msg) {
        send(msg, true);
        await_reply(nullptr);
    }

    // Sends one message (logged as [SEND] if `logged`); exits on failure.
    void send(const std::string &msg, bool logged) {
        const auto *data = reinterpret_cast<const uint8_t *>(msg.data());
        int rc = sl_client_send(c_, SL_MSG_DATA, data, msg.size());
        if (rc == SL_EMSG_TOO_LARGE)
            fail(app::kTooLarge, "message of " + std::to_string(msg.size()) + " bytes is over the limit (--max-message)");
        if (rc == SL_ETIMEDOUT)
            fail(app::kSession, "the server stopped reading: message " + std::to_string(seq_ + 1) + " not sent within " +
                                    std::to_string(timeout_ms_ / 1000) + " s (--timeout)");
        if (rc != SL_OK) fail(app::kSession, "sending failed: " + app::describe(rc));
        ++seq_;
        if (logged)
            log_.line(SL_LOG_MSG, "[SEND] #" + std::to_string(seq_) + " " + content(data, msg.size()) + " (" +
                                      app::count(msg.size(), "byte") + ")");
    }

    // Waits for the reply to the last message and prints it. With `welcome` (the session's first
    // message is still to come), a chat server's first line ends the wait instead: *welcome is
    // set and the line is left for the caller (*line, *len).
    void await_reply(bool *welcome, const uint8_t **line = nullptr, size_t *line_len = nullptr) {
        int type = 0, rc;
        const uint8_t *reply = nullptr;
        size_t len = 0;
        for (;;) {
            rc = sl_client_recv(c_, timeout_ms_, &type, &reply, &len);
            if (rc == SL_ETIMEDOUT) fail(app::kSession, "no reply within " + std::to_string(timeout_ms_ / 1000) + " s");
            if (rc == SL_EPEER_CLOSED) fail(app::kSession, "the server closed the connection without a reply");
            if (rc != SL_OK) fail(app::kSession, "session failed: " + app::describe(rc));
            if (type == SL_MSG_CLOSE) fail(app::kSession, "the server closed the session: " + (len ? content(reply, len) : "no reason given"));
            if (type == SL_MSG_DATA) break;
        }
        if (welcome != nullptr && (*welcome = chat_welcome(reply, len))) {
            *line = reply;
            *line_len = len;
            return;
        }
        log_.line(SL_LOG_WARN, "[RECV] #" + std::to_string(seq_) + " " + content(reply, len) + " (a reply of " +
                                   app::count(len, "byte") + ")");
    }

    // A chat server's first line is "* you are NAME" (PROTOCOL.md "Chat rooms"): from then on every
    // line is shown as it comes, and typed lines are sent without waiting for a reply.
    static bool chat_welcome(const uint8_t *data, size_t len) {
        static const char kWelcome[] = "* you are ";
        return len >= sizeof kWelcome - 1 && std::memcmp(data, kWelcome, sizeof kWelcome - 1) == 0;
    }

    void close() {
        sl_client_close(c_, nullptr);
        log_.line(SL_LOG_INFO, "[INFO] Disconnected");
    }

    // Interactive: waits for typed lines and for the server at once (interactive() below).
    void interactive(int keepalive_ms);

private:
    std::string content(const uint8_t *data, size_t len) const { return redact_ ? "<redacted>" : shown(data, len); }
    [[noreturn]] void fail(int code, const std::string &msg) {
        sl_client_free(c_);
        app::die(kProg, code, msg);
    }
    sl_client *c_;
    app::Logger &log_;
    int timeout_ms_;
    bool redact_;
    uint64_t seq_ = 0;
};

volatile sig_atomic_t g_interrupted = 0;
void on_sigint(int) { g_interrupted = 1; }

// The line being typed, kept below the lines that arrive. On a terminal the input is read byte by
// byte (no echo, no canonical mode; Ctrl-C still signals) and redrawn after each arriving line;
// otherwise lines are read as they come and nothing is redrawn.
class Input {
public:
    explicit Input(bool tty) : tty_(tty) {
        if (!tty_ || tcgetattr(STDIN_FILENO, &saved_) != 0) {
            tty_ = false;
            return;
        }
        termios raw = saved_;
        raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        s_saved = saved_;
        std::atexit([] { tcsetattr(STDIN_FILENO, TCSAFLUSH, &s_saved); });  // also on app::die
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
        prompt();
    }
    // Prints through `print` (which writes whole lines) above the line being typed.
    template <class F>
    void above(F &&print) {
        if (tty_) std::fputs("\r\033[K", stdout);
        print();
        if (tty_) prompt();
    }
    // Reads what stdin has: complete lines go to `lines`. False at the end of input.
    bool read(std::vector<std::string> &lines) {
        char buf[4096];
        ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0) return errno == EINTR || errno == EAGAIN;
        if (n == 0) return false;
        for (ssize_t i = 0; i < n; ++i) {
            const unsigned char ch = static_cast<unsigned char>(buf[i]);
            if (ch == '\n' || (tty_ && ch == '\r')) {
                if (!line_.empty() && line_.back() == '\r') line_.pop_back();
                lines.push_back(std::move(line_));
                line_.clear();
                if (tty_) std::fputs("\r\n", stdout);
            } else if (!tty_) {
                line_ += static_cast<char>(ch);
            } else if (ch == 0x04) {  // Ctrl-D: the end on an empty line
                if (line_.empty()) return false;
            } else if (ch == 0x7f || ch == 0x08) {  // erase one character (all bytes of it)
                while (!line_.empty() && (static_cast<unsigned char>(line_.back()) & 0xC0) == 0x80) line_.pop_back();
                if (!line_.empty()) line_.pop_back();
                redraw();
            } else if (ch == 0x15) {  // Ctrl-U
                line_.clear();
                redraw();
            } else if (ch >= 0x20 && line_.size() < app::kTerminalLine) {
                line_ += static_cast<char>(ch);
                std::fputc(ch, stdout);
            }
        }
        if (!tty_ && line_.size() > 16 * 1024 * 1024) {  // no newline in sight: take what came as a line
            lines.push_back(std::move(line_));
            line_.clear();
        }
        std::fflush(stdout);
        return true;
    }
    // At the end of input: a last line without a newline.
    bool rest(std::string &line) {
        if (tty_ || line_.empty()) return false;
        line.swap(line_);
        return true;
    }
    void done() {
        if (tty_) std::fputs("\r\033[K", stdout);
        std::fflush(stdout);
    }
    bool tty() const { return tty_; }

private:
    void prompt() {
        std::fputs("> ", stdout);
        std::fputs(line_.c_str(), stdout);
        std::fflush(stdout);
    }
    void redraw() {
        std::fputs("\r\033[K", stdout);
        prompt();
    }
    bool tty_;
    termios saved_{};
    static inline termios s_saved{};
    std::string line_;
};

int64_t mono_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

void Session::interactive(int keepalive_ms) {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;  // no SA_RESTART: poll() returns EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    const bool stdin_tty = isatty(STDIN_FILENO) != 0;
    Input in(stdin_tty && isatty(STDOUT_FILENO) != 0);  // the line is redrawn on stdout
    if (stdin_tty)
        in.above([&] {
            log_.line(SL_LOG_INFO, "[INFO] Type a message and press Enter; 'exit', 'quit', Ctrl-D or Ctrl-C to leave.");
        });
    bool chat = false, first = true, input_open = true;
    int64_t last_sent = mono_ms();
    auto show = [&](const uint8_t *data, size_t len) {  // a line that came unasked
        const bool plain = !redact_ && sl_chat_text_ok(data, len);
        in.above([&] {
            log_.line(SL_LOG_WARN, chat ? (plain ? std::string(reinterpret_cast<const char *>(data), len) : content(data, len))
                                        : "[RECV] " + content(data, len) + " (" + app::count(len, "byte") + ", not a reply)");
        });
    };
    auto send_line = [&](const std::string &line) -> bool {  // false: leave
        if (line == "exit" || line == "quit" || line == "!DISCONNECT" || (chat && line == "/quit")) return false;
        if (line.empty()) {
            in.above([&] {
                log_.line(SL_LOG_WARN, "[WARN] empty line: nothing sent (to send an empty message or several lines, "
                                       "use --message-file)");
            });
            return true;
        }
        in.above([&] { send(line, !chat); });
        if (!chat) {
            bool welcome = false;
            const uint8_t *data = nullptr;
            size_t len = 0;
            in.above([&] { await_reply(first ? &welcome : nullptr, &data, &len); });
            if (welcome) {  // a chat server: its first line came instead of a reply
                chat = true;
                show(data, len);
            }
            first = false;
        }
        last_sent = mono_ms();
        return true;
    };
    for (;;) {
        if (g_interrupted) break;
        pollfd fds[2] = {{sl_client_fd(c_), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        int wait = -1;
        if (keepalive_ms > 0) wait = static_cast<int>(std::max<int64_t>(0, last_sent + keepalive_ms - mono_ms()));
        int n = poll(fds, input_open ? 2 : 1, wait);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {  // idle: a PING keeps the session (and NAT state) alive; its PONG is skipped below
            int rc = sl_client_send(c_, SL_MSG_PING, nullptr, 0);
            if (rc != SL_OK) fail(app::kSession, "the connection was lost: " + app::describe(rc));
            last_sent = mono_ms();
            continue;
        }
        if (fds[0].revents != 0) {
            for (;;) {  // everything that has arrived (TLS may hold several records)
                int type = 0;
                const uint8_t *data = nullptr;
                size_t len = 0;
                int rc = sl_client_recv(c_, 0, &type, &data, &len);
                if (rc == SL_ETIMEDOUT) break;
                if (rc == SL_EPEER_CLOSED || rc == SL_ETRUNCATED) {
                    in.done();
                    fail(app::kSession, "the server closed the connection (no CLOSE: it stopped or the network failed)");
                }
                if (rc != SL_OK) {
                    in.done();
                    fail(app::kSession, "session failed: " + app::describe(rc));
                }
                if (type == SL_MSG_CLOSE) {
                    in.done();
                    fail(app::kSession, "the server closed the session: " + (len ? content(data, len) : "no reason given"));
                }
                if (type != SL_MSG_DATA) continue;  // a keep-alive's PONG
                if (first) chat = chat_welcome(data, len);
                first = false;
                show(data, len);
            }
        }
        if (input_open && fds[1].revents != 0) {
            std::vector<std::string> lines;
            input_open = in.read(lines);
            bool leave = false;
            for (const std::string &line : lines) {
                if (stdin_tty && line.size() >= app::kTerminalLine)
                    in.above([&] {
                        log_.line(SL_LOG_WARN, "[WARN] the line is " + app::count(line.size(), "byte") +
                                                   ", the most a terminal passes on: anything longer was cut (send "
                                                   "long text with --message-file)");
                    });
                if (!send_line(line)) {
                    leave = true;
                    break;
                }
            }
            std::string last;
            if (!leave && !input_open && in.rest(last)) leave = !send_line(last);
            if (leave || !input_open) break;
        }
    }
    in.done();
}

int main(int argc, char **argv) {
    app::Args args(argc, argv, kProg, app::spec::k_client);
    app::no_core_dumps();
    if (args.has("help")) {
        std::fputs(app::help_text(kProg, app::spec::k_client).c_str(), stdout);
        return app::kOk;
    }
    if (args.has("version")) {
        std::printf("seclink client %s (c++), protocol seclink/%u\n", sl_version(), sl_protocol_version());
        return app::kOk;
    }
    if (args.all("psk-file").size() > 1)
        app::die(kProg, app::kUsage, "a client uses one key: give --psk-file once (several are for a server)");
    const auto psk_flag = args.get("psk-file");
    const std::string psk_path = app::key_path(kProg, psk_flag);
    if (args.has("keygen")) app::keygen(kProg, psk_path);

    std::string host = "127.0.0.1";
    unsigned long port = SL_DEFAULT_PORT;
    std::vector<std::string> messages;
    if (!args.positional.empty()) host = args.positional[0];
    if (args.positional.size() > 1) port = args.parse_number("PORT", args.positional[1], 1, 65535);
    for (size_t i = 2; i < args.positional.size(); ++i) messages.push_back(args.positional[i]);
    host = args.get("host").value_or(host);
    port = args.number("port", port, 1, 65535);
    for (const std::string &m : args.all("message")) messages.push_back(m);
    for (const std::string &path : args.all("message-file")) {
        std::ifstream f(path, std::ios::binary);
        if (!f) app::die(kProg, app::kUsage, "cannot read --message-file '" + path + "'");
        messages.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    const size_t max_message = args.number("max-message", SL_DEFAULT_MAX_MESSAGE, 0, SL_MAX_MESSAGE_LIMIT);
    for (size_t i = 0; i < messages.size(); ++i)  // refuse before connecting: nothing half-sent
        if (messages[i].size() > max_message)
            app::die(kProg, app::kTooLarge, "message " + std::to_string(i + 1) + " is " + std::to_string(messages[i].size()) +
                                                " bytes, over the limit of " + std::to_string(max_message) +
                                                " bytes (--max-message); nothing was sent");
    const int timeout_ms = static_cast<int>(args.number("timeout", SL_DEFAULT_TIMEOUT_MS / 1000, 1, 3600) * 1000);
    const int keepalive_ms = static_cast<int>(args.number("keepalive", SL_DEFAULT_KEEPALIVE_MS / 1000, 0, 86400) * 1000);
    if (!args.has("tls") && (args.has("tls-ca") || args.has("tls-pin")))
        app::die(kProg, app::kUsage, "--tls-ca and --tls-pin need --tls");
    if (auto pin = args.get("tls-pin")) {
        if (sl_tls_pin_parse(pin->c_str(), nullptr) != SL_OK)
            app::die(kProg, app::kUsage, "--tls-pin takes the certificate's SHA-256 fingerprint: 64 hex digits "
                                         "(colons allowed), as the server prints it");
    }

    if (args.has("redact") && args.has("trace")) app::die(kProg, app::kUsage, "--trace shows message content: not with --redact");
    const bool pipe = args.has("pipe");
    if (pipe && !messages.empty()) app::die(kProg, app::kUsage, "--pipe sends standard input: not with messages");
    const auto sends = args.all("send"), gets = args.all("get");
    const bool files = !sends.empty() || !gets.empty();
    if (files && (pipe || !messages.empty())) app::die(kProg, app::kUsage, "--send and --get do not go with messages or --pipe");
    const auto listen = args.get("listen");
    if (listen && (pipe || files || !messages.empty()))
        app::die(kProg, app::kUsage, "--listen does not go with messages, --pipe, --send or --get");
    if (args.has("overwrite") && gets.empty()) app::die(kProg, app::kUsage, "--overwrite goes with --get");
    for (const std::string &name : gets)
        if (!sl_file_name_valid(name.c_str()))
            app::die(kProg, app::kUsage, "--get takes a plain file name as the server lists it (no '/', not starting "
                                         "with '.'): '" + name + "'");
    for (const std::string &path : sends)  // before connecting: a typo costs no session
        if (access(path.c_str(), R_OK) != 0)
            app::die(kProg, app::kUsage, "cannot read --send '" + path + "': " + std::strerror(errno));
    app::Logger log(kProg, args.get("log-file").value_or("client_logs.txt"), args.has("quiet"));
    if (pipe) log.use_stderr();
    uint8_t psk[SL_KEY_BYTES];
    app::load_key(kProg, psk_path, app::default_key_location(psk_flag), log, psk);

    sl_client_config cfg;
    sl_client_config_init(&cfg);
    cfg.host = host.c_str();
    cfg.port = static_cast<uint16_t>(port);
    cfg.psk = psk;
    cfg.timeout_ms = static_cast<unsigned>(timeout_ms);
    cfg.max_message = max_message;
    cfg.rekey_bytes = args.number("rekey-bytes", 0, 1, ULONG_MAX);
    cfg.trace = args.has("trace");
    cfg.log = app::Logger::callback;
    cfg.log_ud = &log;
    const std::string ca = args.get("tls-ca").value_or(""), pin = args.get("tls-pin").value_or("");
    cfg.tls = args.has("tls");
    cfg.tls_ca = ca.empty() ? nullptr : ca.c_str();
    cfg.tls_pin = pin.empty() ? nullptr : pin.c_str();
    const unsigned mode_mask = app::parse_modes(kProg, args.get("mode").value_or("psk"));
    if ((mode_mask & (mode_mask - 1)) != 0) app::die(kProg, app::kUsage, "--mode takes one mode: psk, server-key or user-key");
    for (int m = 1; m < 32; ++m)
        if (mode_mask == (1u << m)) cfg.mode = m;
    if (cfg.mode == SL_MODE_PSK && (args.has("server-key") || args.has("trust-on-first-use")))
        app::die(kProg, app::kUsage, "--server-key and --trust-on-first-use need --mode server-key or user-key");
    if (cfg.mode != SL_MODE_USER_KEY && args.has("identity")) app::die(kProg, app::kUsage, "--identity needs --mode user-key");
    if ((cfg.mode == SL_MODE_PASSWORD) != args.has("user"))
        app::die(kProg, app::kUsage, "--mode password and --user NAME go together");
    const std::string user = args.get("user").value_or("");
    std::string password;
    if (cfg.mode == SL_MODE_PASSWORD) {
        password = app::read_password(kProg, args, "Password for " + user + ": ", false);
        cfg.user = user.c_str();
        cfg.password = reinterpret_cast<const uint8_t *>(password.data());
        cfg.password_len = password.size();
    }
    uint8_t identity[32];
    if (cfg.mode == SL_MODE_USER_KEY) {
        app::load_identity(kProg, args, log, identity);
        cfg.identity = identity;
    }

    const std::string where = app::host_port(host, port);
    if (listen) {  // a tunnel: every local connection gets its own session, with this key
        log.line(SL_LOG_INFO, "[INFO] Tunnel: connections to " + *listen + " are carried to " + where);
        return app::pipe::run_tunnel_client(kProg, cfg, psk, *listen, log);
    }
    unsigned modes_seen = 0;
    cfg.server_modes_seen = &modes_seen;
    sl_client *c = nullptr;
    int rc = cfg.mode != SL_MODE_PSK ? app::connect_checked(kProg, cfg, args, where, log, &c) : sl_client_connect(&c, &cfg);
    app::wipe(psk, sizeof psk);
    app::wipe(identity, sizeof identity);
    app::wipe(password.data(), password.size());
    if (rc == SL_EMODE_REFUSED) app::mode_refused(kProg, where, modes_seen, cfg.mode);
    if (rc != SL_OK) {
        Outcome o = connect_error(rc, where);
        app::die(kProg, o.code, o.text);
    }
    log.line(SL_LOG_INFO, "[INFO] Connected to " + where +
                              (cfg.mode == SL_MODE_SERVER_KEY ? " (seclink/1: Noise NXpsk2, server key verified + AES-256-GCM"
                               : cfg.mode == SL_MODE_USER_KEY ? " (seclink/1: Noise XXpsk3, server key verified, as a key user + AES-256-GCM"
                               : cfg.mode == SL_MODE_PASSWORD ? " (seclink/1: Noise NXpsk2, server key verified, as " + user + " + AES-256-GCM"
                                                              : " (seclink/1: Noise NNpsk0 + AES-256-GCM") +
                              (cfg.tls ? ", inside TLS 1.3)" : ")"));
    if (pipe) return app::pipe::run_client(kProg, c, log, max_message);
    if (files) {
        int code = app::kOk;
        for (const std::string &path : sends)
            if (code == app::kOk) code = app::transfer::run(kProg, c, log, true, path, false);
        for (const std::string &name : gets)
            if (code == app::kOk) code = app::transfer::run(kProg, c, log, false, name, args.has("overwrite"));
        sl_client_close(c, nullptr);
        sl_client_free(c);
        return code;
    }
    Session session(c, log, timeout_ms, args.has("redact"));
    if (!messages.empty()) {
        for (const std::string &m : messages) session.exchange(m);
    } else {
        session.interactive(keepalive_ms);
    }
    session.close();
    sl_client_free(c);
    return app::kOk;
}
