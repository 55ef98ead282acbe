// identity.hpp - server identity in the programs (docs/PROTOCOL.md 14): the server's static key
// file and the modes it accepts; the client's known-servers decision (SSH-style). The rules are
// the same in python/seclink/cli.py; the file formats and fingerprints are the core's.
#pragma once

#include <fcntl.h>
#include <libgen.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <openssl/evp.h>

#include "common.hpp"

namespace app {

// "psk,server-key" -> a mask of (1 << sl_mode).
inline unsigned parse_modes(const char *prog, const std::string &list) {
    unsigned mask = 0;
    size_t start = 0;
    while (start <= list.size()) {
        size_t comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        const std::string name = list.substr(start, comma - start);
        int found = 0;
        for (int m = 1; m < 32; ++m)
            if (name == sl_mode_name(m)) found = m;
        if (found == 0) die(prog, kUsage, "--modes takes a list of psk and server-key, not '" + list + "'");
        mask |= 1u << found;
        start = comma + 1;
    }
    return mask;
}

inline std::string mode_names(unsigned mask) {
    std::string out;
    for (int m = 1; m < 32; ++m)
        if (mask & (1u << m)) out += (out.empty() ? "" : ", ") + std::string(sl_mode_name(m));
    return out.empty() ? "none" : out;
}

inline std::string fingerprint(const uint8_t pub[32]) {
    char buf[SL_FINGERPRINT_CHARS + 1] = {};
    sl_key_fingerprint(pub, buf, sizeof buf);
    return buf;
}

// Where a server keeps its static key by default: beside the first --psk-file (a file or a
// directory of them), else beside the default key.
inline std::string server_key_path(const std::string &first_key) {
    std::string copy = first_key;
    char resolved[4096];
    if (copy.empty() || copy[0] != '/') {
        if (getcwd(resolved, sizeof resolved) != nullptr) copy = std::string(resolved) + "/" + copy;
    }
    std::vector<char> buf(copy.begin(), copy.end());
    buf.push_back('\0');
    return std::string(dirname(buf.data())) + "/server_key";
}

// Loads the server's static key (created there on first use at its default location); true if
// it was created.
inline bool load_server_key(const char *prog, const std::string &path, bool is_default, uint8_t key[32]) {
    unsigned warnings = 0;
    bool created = false;
    int rc = sl_key_load_ex(path.c_str(), key, &warnings);
    if (rc == SL_EKEY_NOT_FOUND && is_default) {
        rc = sl_key_generate(path.c_str(), key);
        created = rc == SL_OK;
        if (rc == SL_EKEY_EXISTS) rc = sl_key_load_ex(path.c_str(), key, &warnings);
    }
    if (rc == SL_EKEY_NOT_FOUND)
        die(prog, kKey, "key file " + path + ": " + describe(rc) + " (or leave out the flag that names it to use "
                        "the default, created on first use)");
    if (rc != SL_OK) die(prog, kKey, "key file " + path + ": " + describe(rc));
    return created;
}

// A server that refused the mode asked for said which it accepts (PROTOCOL.md 14.2): name both.
[[noreturn]] inline void mode_refused(const char *prog, const std::string &where, unsigned accepted, int asked) {
    die(prog, kHandshake, "the server at " + where + " accepts only the modes: " + mode_names(accepted) +
                              "; this client asked for " + sl_mode_name(asked) + " (choose one with --mode) [MODE_REFUSED]");
}

// The client's identity (mode 3, PROTOCOL.md 15): loaded, or created on first use at the default
// location; its public key is printed for the server's authorized-keys file.
inline void load_identity(const char *prog, const Args &args, Logger &log, uint8_t priv[32]) {
    std::string path = args.get("identity").value_or("");
    const bool is_default = path.empty();
    if (is_default) {
        char dir[4096];
        if (sl_config_dir(dir, sizeof dir, nullptr) != SL_OK)
            die(prog, kKey, "cannot work out where the identity file is (set HOME or use --identity)");
        path = std::string(dir) + "/identity";
    }
    if (load_server_key(prog, path, is_default, priv))
        log.line(SL_LOG_INFO, "[INFO] No identity found: created one at " + path + " (mode 0600)");
    uint8_t pub[32];
    char b64[64];
    if (sl_key_public(priv, pub) != SL_OK) die(prog, kKey, "identity file " + path + " is unusable");
    EVP_EncodeBlock(reinterpret_cast<unsigned char *>(b64), pub, 32);
    log.line(SL_LOG_INFO, "[INFO] Identity " + path + ", public key " + b64 + " (the server lists it as NAME " + b64 + ")");
}

// A password (PROTOCOL.md 16): from --password-fd N, else $SECLINK_PASSWORD, else asked on the
// terminal without echo (twice, when `confirm`). Never logged.
inline std::string read_password(const char *prog, const Args &args, const std::string &prompt, bool confirm) {
    std::string pw;
    if (auto fd_text = args.get("password-fd")) {
        const int fd = static_cast<int>(args.parse_number("--password-fd", *fd_text, 0, 1 << 20));
        char c;
        while (read(fd, &c, 1) == 1 && c != '\n') pw += c;
        return pw;
    }
    if (const char *env = std::getenv("SECLINK_PASSWORD")) return env;
    const int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty < 0)
        die(prog, kUsage, "no terminal to ask for the password on: use --password-fd N or $SECLINK_PASSWORD");
    auto ask = [&](const std::string &text) {
        std::string out;
        termios old{}, quiet{};
        tcgetattr(tty, &old);
        quiet = old;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        tcsetattr(tty, TCSAFLUSH, &quiet);
        (void)!write(tty, text.data(), text.size());
        char c;
        while (read(tty, &c, 1) == 1 && c != '\n') out += c;
        tcsetattr(tty, TCSAFLUSH, &old);
        (void)!write(tty, "\n", 1);
        return out;
    };
    pw = ask(prompt);
    if (confirm && ask("Again: ") != pw) {
        close(tty);
        die(prog, kUsage, "the two passwords differ; nothing was changed");
    }
    close(tty);
    return pw;
}

// The client's side of PROTOCOL.md 14.4. Connects with `cfg` (mode 2): a known key is expected;
// an unknown one is learned with a first connection that stops after frame 2, accepted by
// --server-key FINGERPRINT, --trust-on-first-use or the user's answer, recorded, and connected
// to again expecting it. Exits with a message on a refusal of this kind; other errors are returned.
inline int connect_checked(const char *prog, sl_client_config &cfg, const Args &args, const std::string &where,
                           Logger &log, sl_client **out) {
    char known_buf[4096];
    std::string known = args.get("known-servers").value_or("");
    if (known.empty()) {
        if (sl_known_servers_path(known_buf, sizeof known_buf, nullptr) != SL_OK)
            die(prog, kUsage, "cannot work out where the known-servers file is (set HOME or use --known-servers)");
        known = known_buf;
    }
    uint8_t expected[32], seen[32] = {};
    unsigned line = 0;
    int rc = sl_known_servers_lookup(known.c_str(), where.c_str(), expected, &line);
    if (rc != SL_OK && rc != SL_ESERVER_KEY_UNKNOWN)
        die(prog, kKey, "known-servers file " + known + ": " + describe(rc) +
                            (rc == SL_EKEY_PERMISSIONS ? " (run 'chmod go-w " + known + "')" : ""));
    const bool was_known = rc == SL_OK;
    cfg.server_key = was_known ? expected : nullptr;
    cfg.server_key_seen = seen;
    rc = sl_client_connect(out, &cfg);
    if (rc == SL_ESERVER_KEY_UNKNOWN) {
        const std::string fp = fingerprint(seen);
        const auto pinned = args.get("server-key");
        bool trusted = false;
        if (pinned) {
            if (!sl_fingerprint_matches(pinned->c_str(), seen))
                die(prog, kHandshake, "the server at " + where + " has the key " + fp + ", not the one given with "
                                      "--server-key (" + *pinned + "): refusing to connect; check the fingerprint "
                                      "with the server's operator");
            trusted = true;
        } else if (args.has("trust-on-first-use")) {
            trusted = true;
        } else if (isatty(STDIN_FILENO) && isatty(STDERR_FILENO)) {
            std::fprintf(stderr, "The authenticity of server '%s' can't be established.\n"
                                 "Its key fingerprint is %s.\n"
                                 "Compare it with the fingerprint the server printed. Trust it (yes/no)? ",
                         where.c_str(), fp.c_str());
            std::fflush(stderr);
            std::string answer;
            std::getline(std::cin, answer);
            trusted = answer == "yes" || answer == "y";
        }
        if (!trusted)
            die(prog, kHandshake, "the server at " + where + " is not known: its key fingerprint is " + fp +
                                  ". Compare it with the fingerprint the server printed, then connect with --server-key " +
                                  fp + " (or --trust-on-first-use) [SERVER_KEY_UNKNOWN]");
        rc = sl_known_servers_add(known.c_str(), where.c_str(), seen);
        if (rc != SL_OK) die(prog, kKey, "cannot add the server's key to " + known + ": " + describe(rc));
        log.line(SL_LOG_INFO, "[INFO] Added " + where + " (key " + fp + ") to the known servers in " + known);
        std::memcpy(expected, seen, sizeof expected);
        cfg.server_key = expected;
        rc = sl_client_connect(out, &cfg);
    }
    if (rc == SL_ESERVER_KEY_CHANGED) {
        std::fprintf(stderr,
                     "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
                     "@    WARNING: THE SERVER'S KEY HAS CHANGED!               @\n"
                     "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
                     "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n"
                     "Someone could be in the middle of this connection right now, reading and changing it.\n"
                     "It is also possible that the server's key has just been replaced.\n"
                     "The key the server sent has the fingerprint %s.\n"
                     "The key trusted for %s has the fingerprint %s (%s, line %u).\n"
                     "If you know the change is expected (ask the server's operator for the new fingerprint),\n"
                     "delete line %u of %s and connect again.\n",
                     fingerprint(seen).c_str(), where.c_str(), fingerprint(expected).c_str(), known.c_str(), line, line,
                     known.c_str());
        die(prog, kHandshake, "the key of the server at " + where + " has changed: refusing to connect [SERVER_KEY_CHANGED]");
    }
    return rc;
}

}  // namespace app
