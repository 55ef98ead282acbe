// client - the seclink/1 client program: `./client 127.0.0.1 5000 "hello"`. See --help.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <climits>

#include "common.hpp"
#include "identity.hpp"

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
        const auto *data = reinterpret_cast<const uint8_t *>(msg.data());
        int rc = sl_client_send(c_, SL_MSG_DATA, data, msg.size());
        if (rc == SL_EMSG_TOO_LARGE)
            fail(app::kTooLarge, "message of " + std::to_string(msg.size()) + " bytes is over the limit (--max-message)");
        if (rc == SL_ETIMEDOUT)
            fail(app::kSession, "the server stopped reading: message " + std::to_string(seq_ + 1) + " not sent within " +
                                    std::to_string(timeout_ms_ / 1000) + " s (--timeout)");
        if (rc != SL_OK) fail(app::kSession, "sending failed: " + app::describe(rc));
        ++seq_;
        log_.line(SL_LOG_MSG, "[SEND] #" + std::to_string(seq_) + " " + content(data, msg.size()) + " (" +
                                  app::count(msg.size(), "byte") + ")");
        int type = 0;
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
        log_.line(SL_LOG_WARN, "[RECV] #" + std::to_string(seq_) + " " + content(reply, len) + " (a reply of " +
                                   app::count(len, "byte") + ")");
    }

    void close() {
        sl_client_close(c_, nullptr);
        log_.line(SL_LOG_INFO, "[INFO] Disconnected");
    }

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

}  // namespace

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
    if (!args.has("tls") && (args.has("tls-ca") || args.has("tls-pin")))
        app::die(kProg, app::kUsage, "--tls-ca and --tls-pin need --tls");
    if (auto pin = args.get("tls-pin")) {
        if (sl_tls_pin_parse(pin->c_str(), nullptr) != SL_OK)
            app::die(kProg, app::kUsage, "--tls-pin takes the certificate's SHA-256 fingerprint: 64 hex digits "
                                         "(colons allowed), as the server prints it");
    }

    if (args.has("redact") && args.has("trace")) app::die(kProg, app::kUsage, "--trace shows message content: not with --redact");
    app::Logger log(kProg, args.get("log-file").value_or("client_logs.txt"), args.has("quiet"));
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
    unsigned modes_seen = 0;
    cfg.server_modes_seen = &modes_seen;
    sl_client *c = nullptr;
    int rc = cfg.mode != SL_MODE_PSK ? app::connect_checked(kProg, cfg, args, where, log, &c) : sl_client_connect(&c, &cfg);
    explicit_bzero(psk, sizeof psk);
    explicit_bzero(identity, sizeof identity);
    explicit_bzero(password.data(), password.size());
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
    Session session(c, log, timeout_ms, args.has("redact"));
    if (!messages.empty()) {
        for (const std::string &m : messages) session.exchange(m);
    } else {
        const bool tty = isatty(STDIN_FILENO);
        if (tty) log.line(SL_LOG_INFO, "[INFO] Type a message and press Enter; 'exit', 'quit' or Ctrl-D to leave.");
        std::string line;
        for (;;) {
            if (tty) {
                std::fputs("> ", stdout);
                std::fflush(stdout);
            }
            if (!std::getline(std::cin, line)) break;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line == "exit" || line == "quit" || line == "!DISCONNECT") break;
            if (line.empty()) {
                log.line(SL_LOG_WARN, "[WARN] empty line: nothing sent (to send an empty message or several lines, "
                                      "use --message-file)");
                continue;
            }
            if (tty && line.size() >= app::kTerminalLine)
                log.line(SL_LOG_WARN, "[WARN] the line is " + app::count(line.size(), "byte") + ", the most a terminal "
                                      "passes on: anything longer was cut (send long text with --message-file)");
            session.exchange(line);
        }
    }
    session.close();
    sl_client_free(c);
    return app::kOk;
}
