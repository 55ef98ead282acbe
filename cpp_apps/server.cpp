// server - the seclink/1 server program: `./server 5000`. See --help and README.md.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "identity.hpp"
#include "pipe.hpp"

namespace {

const char *kProg = "server";

}  // namespace

int main(int argc, char **argv) {
    app::Args args(argc, argv, kProg, app::spec::k_server);
    app::no_core_dumps();
    if (args.has("help")) {
        std::fputs(app::help_text(kProg, app::spec::k_server).c_str(), stdout);
        return app::kOk;
    }
    if (args.has("version")) {
        std::printf("seclink server %s (c++), protocol seclink/%u\n", sl_version(), sl_protocol_version());
        return app::kOk;
    }
    if (args.positional.size() > 1) app::die(kProg, app::kUsage, "too many arguments (see --help)");
    unsigned long port = SL_DEFAULT_PORT;
    if (!args.positional.empty()) port = args.parse_number("PORT", args.positional[0], 0, 65535);
    port = args.number("port", port, 0, 65535);

    if (auto name = args.get("add-user")) {  // PROTOCOL.md 16: store a password user, then exit
        const auto file = args.get("users");
        if (!file) app::die(kProg, app::kUsage, "--add-user NAME needs --users FILE (where the password hashes go)");
        std::string pw = app::read_password(kProg, args, "New password for " + *name + ": ", true);
        const int rc = sl_users_add(file->c_str(), name->c_str(), reinterpret_cast<const uint8_t *>(pw.data()), pw.size());
        app::wipe(pw.data(), pw.size());
        if (rc == SL_EINVAL) app::die(kProg, app::kUsage, "a user name is 1 to 32 of A-Z a-z 0-9 . _ -, not '" + *name + "'");
        if (rc != SL_OK) app::die(kProg, app::kKey, "cannot write " + *file + ": " + app::describe(rc));
        std::printf("[INFO] Stored a salted scrypt hash of %s's password in %s (mode 0600)\n", name->c_str(), file->c_str());
        return app::kOk;
    }
    if (args.has("keygen")) {
        if (args.all("psk-file").size() > 1)
            app::die(kProg, app::kUsage, "--keygen writes one key file: give at most one --psk-file");
        app::keygen(kProg, app::key_path(kProg, args.get("psk-file")));
    }

    sl_server_config cfg;
    sl_server_config_init(&cfg);
    const std::string host = args.get("host").value_or("0.0.0.0");
    cfg.host = host.c_str();
    cfg.port = static_cast<uint16_t>(port);
    cfg.threads = static_cast<unsigned>(args.number("threads", 0, 1, 1024));
    cfg.max_clients = static_cast<unsigned>(args.number("max-clients", SL_DEFAULT_MAX_CLIENTS, 1, 1000000));
    cfg.max_handshakes = static_cast<unsigned>(args.number("max-handshakes", SL_DEFAULT_MAX_HANDSHAKES, 1, 1000000));
    cfg.max_handshakes_per_addr = static_cast<unsigned>(
        args.number("max-handshakes-per-address", SL_DEFAULT_MAX_HANDSHAKES_PER_ADDR, 1, 1000000));
    cfg.handshake_rate = static_cast<unsigned>(args.number("handshake-rate", SL_DEFAULT_HANDSHAKE_RATE, 1, 1000000));
    cfg.handshake_timeout_ms =
        static_cast<unsigned>(args.number("handshake-timeout", SL_DEFAULT_HANDSHAKE_TIMEOUT_MS / 1000, 1, 3600) * 1000);
    cfg.idle_timeout_ms =
        static_cast<unsigned>(args.number("idle-timeout", SL_DEFAULT_IDLE_TIMEOUT_MS / 1000, 1, 86400) * 1000);
    cfg.frame_timeout_ms =
        static_cast<unsigned>(args.number("frame-timeout", SL_DEFAULT_FRAME_TIMEOUT_MS / 1000, 1, 86400) * 1000);
    cfg.max_memory = args.number("max-memory", SL_DEFAULT_MAX_MEMORY >> 20, 1, 1u << 20) << 20;
    cfg.max_message = args.number("max-message", SL_DEFAULT_MAX_MESSAGE, 0, SL_MAX_MESSAGE_LIMIT);
    cfg.rekey_bytes = args.number("rekey-bytes", 0, 1, ULONG_MAX);
    cfg.echo = args.has("echo");
    const std::string files_dir = args.get("files").value_or("");
    if (!args.has("files") && (args.has("overwrite") || args.has("max-file-size") || args.has("max-files-total")))
        app::die(kProg, app::kUsage, "--overwrite, --max-file-size and --max-files-total go with --files DIR");
    if (args.has("files")) {
        struct stat st;
        if (files_dir.empty() || stat(files_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            app::die(kProg, app::kUsage, "--files '" + files_dir + "' is not a directory (create it first)");
        if (cfg.max_message < SL_FILE_CHUNK)
            app::die(kProg, app::kUsage, "--files needs --max-message of at least " + std::to_string(SL_FILE_CHUNK) + " bytes");
        cfg.files_dir = files_dir.c_str();
        signal(SIGXFSZ, SIG_IGN);  // a file-size limit is a write error (DISK_FULL to the client), not death
        cfg.files_overwrite = args.has("overwrite");
        cfg.max_file_size = uint64_t{args.number("max-file-size", SL_DEFAULT_MAX_FILE_SIZE >> 20, 1, 1ul << 40)} << 20;
        cfg.max_files_total = uint64_t{args.number("max-files-total", SL_DEFAULT_MAX_FILES_TOTAL >> 20, 1, 1ul << 40)} << 20;
    }
    cfg.chat = args.has("chat");
    cfg.chat_rooms = static_cast<unsigned>(args.number("chat-rooms", SL_DEFAULT_CHAT_ROOMS, 1, 1000000));
    cfg.chat_members = static_cast<unsigned>(args.number("chat-members", SL_DEFAULT_CHAT_MEMBERS, 1, 1000000));
    cfg.chat_rate = static_cast<unsigned>(args.number("chat-rate", SL_DEFAULT_CHAT_RATE, 1, 1000000));
    cfg.chat_queue = static_cast<unsigned>(args.number("chat-queue", SL_DEFAULT_CHAT_QUEUE, 1, 1000000));
    if (!cfg.chat && (args.has("chat-rooms") || args.has("chat-members") || args.has("chat-rate") || args.has("chat-queue")))
        app::die(kProg, app::kUsage, "--chat-rooms, --chat-members, --chat-rate and --chat-queue need --chat");
    if (cfg.chat && args.has("echo")) app::die(kProg, app::kUsage, "--echo does not apply to --chat (lines are relayed)");
    const std::string cluster = args.get("cluster").value_or("");
    if (!cluster.empty() && !cfg.chat) app::die(kProg, app::kUsage, "--cluster needs --chat");
    if (!cluster.empty() && !sl_chat_cluster_available())
        app::die(kProg, app::kUsage, "--cluster: this build has no NATS client (install libnats-dev and rebuild)");
    cfg.chat_cluster = cluster.empty() ? nullptr : cluster.c_str();
    cfg.log_level = args.has("trace") ? SL_LOG_TRACE : args.has("quiet") ? SL_LOG_WARN : SL_LOG_MSG;
    cfg.redact = args.has("redact");
    if (cfg.redact && args.has("trace")) app::die(kProg, app::kUsage, "--trace shows message content: not with --redact");

    const bool pipe = args.has("pipe");
    if (pipe && (args.has("tls") || args.has("echo")))
        app::die(kProg, app::kUsage, std::string(args.has("tls") ? "--tls" : "--echo") + " does not go with --pipe");
    if (args.has("forward") && (pipe || args.has("tls") || args.has("echo") || args.has("files")))
        app::die(kProg, app::kUsage, "--forward does not go with --pipe, --tls, --echo or --files");
    app::Logger log(kProg, args.get("log-file").value_or("server_logs.txt"), args.has("quiet"));
    if (args.has("forward") && !args.has("trace")) cfg.log_level = args.has("quiet") ? SL_LOG_WARN : SL_LOG_INFO;
    if (pipe) {
        log.use_stderr();
        if (!args.has("trace")) cfg.log_level = args.has("quiet") ? SL_LOG_WARN : SL_LOG_INFO;  // no line per chunk
    }
    cfg.log = app::Logger::callback;
    cfg.log_ud = &log;

    if (!args.has("tls") && (args.has("tls-cert") || args.has("tls-key")))
        app::die(kProg, app::kUsage, "--tls-cert and --tls-key need --tls");
    std::vector<uint8_t> psks;
    bool rotation = false;
    const std::vector<std::string> psk_files = app::server_keys(kProg, args, log, psks, &rotation);
    std::vector<const char *> psk_names;
    for (const auto &f : psk_files) psk_names.push_back(f.c_str());
    cfg.psk = psks.data();
    cfg.psk_count = psk_files.size();
    if (rotation) cfg.psk_names = psk_names.data();
    std::string keys_line = (psk_files.size() == 1 ? "key " : "keys ") + psk_files[0];
    for (size_t i = 1; i < psk_files.size(); ++i) keys_line += ", " + psk_files[i];

    // Pipe and tunnel servers take the PSK mode only.
    if (pipe) {
        const int code = app::pipe::run_server(kProg, cfg, host, port, log);
        app::wipe(psks.data(), psks.size());
        return code;
    }
    if (auto target = args.get("forward")) return app::pipe::run_forward_server(kProg, cfg, host, port, *target, log);

    // Server identity (PROTOCOL.md 14): the static key, unless only psk mode is accepted.
    const auto authorized = args.get("authorized-keys"), passwords = args.get("users");
    std::string default_modes = "psk,server-key";
    if (authorized) default_modes += ",user-key";
    if (passwords) default_modes += ",password";
    cfg.modes = app::parse_modes(kProg, args.get("modes").value_or(default_modes));
    if ((cfg.modes & (1u << SL_MODE_PASSWORD)) && !passwords)
        app::die(kProg, app::kUsage, "the password mode needs --users FILE (written by --add-user)");
    if (passwords) {
        if (!(cfg.modes & (1u << SL_MODE_PASSWORD)))
            app::die(kProg, app::kUsage, "--users is for the password mode, which --modes leaves out");
        cfg.password_users = passwords->c_str();
    }
    if ((cfg.modes & (1u << SL_MODE_USER_KEY)) && !authorized)
        app::die(kProg, app::kUsage, "the user-key mode needs --authorized-keys FILE (the users' public keys)");
    if (authorized) {
        if (!(cfg.modes & (1u << SL_MODE_USER_KEY)))
            app::die(kProg, app::kUsage, "--authorized-keys is for the user-key mode, which --modes leaves out");
        cfg.authorized_keys = authorized->c_str();
    }
    uint8_t server_key[32];
    std::string server_key_line;
    if (cfg.modes & ((1u << SL_MODE_SERVER_KEY) | (1u << SL_MODE_USER_KEY) | (1u << SL_MODE_PASSWORD))) {
        const auto sk_flag = args.get("server-key-file");
        const auto given = args.all("psk-file");
        const std::string sk_path = sk_flag ? *sk_flag : app::server_key_path(given.empty() ? psk_files[0] : given[0]);
        if (app::load_server_key(kProg, sk_path, !sk_flag, server_key))
            server_key_line = "[INFO] No server key found: created one at " + sk_path + " (mode 0600)\n";
        cfg.server_key = server_key;
        uint8_t pub[32];
        if (sl_key_public(server_key, pub) != SL_OK) app::die(kProg, app::kKey, "server key file " + sk_path + " is unusable");
        server_key_line += "[INFO] Server key " + sk_path + ", fingerprint " + app::fingerprint(pub);
    } else if (args.has("server-key-file")) {
        app::die(kProg, app::kUsage, "--server-key-file is for the server-key and user-key modes, which --modes leaves out");
    }

    std::string cert, key;
    if (args.has("tls")) {
        cfg.tls = 1;
        cert = args.get("tls-cert").value_or("");
        key = args.get("tls-key").value_or("");
        if (cert.empty() != key.empty()) app::die(kProg, app::kUsage, "--tls-cert and --tls-key go together");
        if (cert.empty()) {
            char dir[4096];
            if (sl_config_dir(dir, sizeof dir, nullptr) != SL_OK)
                app::die(kProg, app::kTls, "no config directory for the TLS certificate (set HOME or use --tls-cert)");
            cert = std::string(dir) + "/tls/cert.pem";
            key = std::string(dir) + "/tls/key.pem";
            int created = 0;
            int rc = sl_tls_ensure_self_signed(cert.c_str(), key.c_str(), &created);
            if (rc != SL_OK) app::die(kProg, app::kTls, "cannot create a TLS certificate in " + std::string(dir) + "/tls: " + app::describe(rc));
            if (created) log.line(SL_LOG_INFO, "[INFO] Created a self-signed TLS certificate: " + cert);
        }
        char fp[65];
        if (sl_tls_fingerprint(cert.c_str(), fp, sizeof fp) != SL_OK)
            app::die(kProg, app::kTls, "cannot read the TLS certificate " + cert + " (check --tls-cert)");
        log.line(SL_LOG_INFO, "[INFO] TLS 1.3 certificate " + cert + ", SHA-256 fingerprint " + fp);
    }
    cfg.tls_cert = cert.c_str();
    cfg.tls_key = key.c_str();

    // SIGINT/SIGTERM are blocked in every thread and taken by sigwait() below: no async handler.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);  // re-read --authorized-keys
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    sl_server *server = nullptr;
    int rc = sl_server_new(&server, &cfg);
    app::wipe(psks.data(), psks.size());  // the server keeps its own copy
    app::wipe(server_key, sizeof server_key);
    if (rc == SL_EADDRINUSE)
        app::die(kProg, app::kNetwork, "cannot listen on " + app::host_port(host, port) +
                                           ": the port is in use by another program (choose another with --port)");
    if (rc == SL_ERESOLVE) app::die(kProg, app::kNetwork, "cannot listen on '" + host + "': not a local address (check --host)");
    if (rc != SL_OK && (authorized || passwords) && sl_err_category(rc) == SL_CAT_KEY)
        app::die(kProg, app::kKey, std::string(authorized ? "authorized keys " + *authorized : "") +
                                       (authorized && passwords ? " or " : "") +
                                       (passwords ? "users file " + *passwords : "") + ": " + app::describe(rc) +
                                       " (authorized keys: NAME BASE64-PUBLIC-KEY lines; users: written by --add-user)");
    if (rc == SL_ETLS_CERT) app::die(kProg, app::kTls, "TLS certificate/key unusable: " + cert + ", " + key + " (check --tls-cert and --tls-key)");
    if (rc != SL_OK && sl_err_category(rc) == SL_CAT_NETWORK)
        app::die(kProg, app::kNetwork, "cannot listen on " + app::host_port(host, port) + ": " + app::describe(rc));
    if (rc == SL_EINVAL && !cluster.empty())
        app::die(kProg, app::kUsage, "--cluster takes the NATS server's URL, nats://HOST:PORT (got '" + cluster + "')");
    if (rc != SL_OK) app::die(kProg, sl_err_category(rc), "cannot start: " + app::describe(rc));

    const unsigned threads = cfg.threads ? cfg.threads : sl_server_default_threads();
    log.line(SL_LOG_INFO, "[INFO] seclink server " + std::string(sl_version()) + " (c++): " + std::to_string(threads) +
                              (threads == 1 ? " worker thread" : " worker threads") + ", max " +
                              std::to_string(cfg.max_clients) + " clients, " + keys_line);
    for (size_t start = 0, nl; start < server_key_line.size(); start = nl + 1) {  // after the first line
        nl = server_key_line.find('\n', start);
        if (nl == std::string::npos) nl = server_key_line.size();
        log.line(SL_LOG_INFO, server_key_line.substr(start, nl - start));
    }
    log.line(SL_LOG_INFO, "[INFO] Handshake modes accepted: " + app::mode_names(cfg.modes));
    if ((rc = sl_server_start(server)) != SL_OK) app::die(kProg, app::kInternal, "cannot start: " + app::describe(rc));
    // Only now, with every worker ready, does "Listening on" tell scripts the server is up.
    log.line(SL_LOG_INFO, "[INFO] Listening on " + app::host_port(host, sl_server_port(server)), true);

    int sig = 0;
    while (sigwait(&stop_signals, &sig) == 0 && sig == SIGHUP) {
        if (authorized || passwords) sl_server_reload_users(server);  // logs what it did
        else log.line(SL_LOG_INFO, "[INFO] SIGHUP: nothing to reload (no --authorized-keys or --users)");
    }
    log.line(SL_LOG_INFO, std::string("[INFO] ") + (sig == SIGINT ? "Interrupted" : "Terminated") + ": closing " +
                              app::count(sl_server_sessions(server), "session"));
    sl_server_stop(server);
    sl_server_wait(server);
    sl_server_free(server);
    log.line(SL_LOG_INFO, "[INFO] Server stopped");
    return app::kOk;
}
