// common.hpp - what the server and client programs share: flag parsing, the screen + file
// logger, finding (or creating) the pre-shared key, and the documented exit codes.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <openssl/crypto.h>

#include "flags.hpp"
#include "seclink/seclink.h"

namespace app {

// Exit codes, the same for both programs (and for the Python scripts): the core's error
// categories (sl_category in seclink.h). See README.md.
enum Exit {
    kOk = SL_CAT_OK,
    kInternal = SL_CAT_INTERNAL,
    kUsage = SL_CAT_USAGE,
    kKey = SL_CAT_KEY,
    kNetwork = SL_CAT_NETWORK,
    kHandshake = SL_CAT_HANDSHAKE,
    kTls = SL_CAT_TLS,
    kSession = SL_CAT_SESSION,
    kTooLarge = SL_CAT_TOO_LARGE,
};

// What these programs' flags can do about a library error (the library's own messages name no
// flags): the "hints" of python/seclink/flags.json, which cli.py reads too.
inline const char *flag_hint(int rc) {
    for (const auto &h : spec::k_hints)
        if (std::strcmp(h.error, sl_errname(rc)) == 0) return h.hint;
    return nullptr;
}

inline std::string describe(int rc) {
    const char *hint = flag_hint(rc);
    std::string what = sl_strerror(rc);
    if (rc == SL_ESOCKET && sl_last_os_error() != 0) what += std::string(" (") + std::strerror(sl_last_os_error()) + ")";
    return what + (hint != nullptr ? std::string("; ") + hint : "") + " [" + sl_errname(rc) + "]";
}

// "1 byte", "2 bytes".
inline std::string count(unsigned long long n, const char *thing) {
    return std::to_string(n) + " " + thing + (n == 1 ? "" : "s");
}

// "127.0.0.1:5000", "[::1]:5000": an IPv6 address in brackets, as in a URL.
inline std::string host_port(const std::string &host, unsigned long port) {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// The terminal's line limit (Linux N_TTY): a longer line typed or pasted is cut to this.
constexpr size_t kTerminalLine = 4095;

// A fatal error: one line on stderr, then exit with `code`.
[[noreturn]] inline void die(const char *prog, int code, const std::string &msg) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", prog, msg.c_str());
    std::exit(code);
}

// The help text, made from the flag table (flags.hpp, generated from python/seclink/flags.json,
// which cli.py formats the same way). {DEFAULT_X} in it is SL_DEFAULT_X of seclink.h; ":s" gives a
// time in milliseconds in seconds, ":MiB" bytes in MiB.
inline std::string expand_defaults(const std::string &text) {
    static const std::pair<const char *, unsigned long> kDefaults[] = {
        {"DEFAULT_PORT", SL_DEFAULT_PORT},
        {"DEFAULT_MAX_CLIENTS", SL_DEFAULT_MAX_CLIENTS},
        {"DEFAULT_MAX_HANDSHAKES", SL_DEFAULT_MAX_HANDSHAKES},
        {"DEFAULT_MAX_HANDSHAKES_PER_ADDR", SL_DEFAULT_MAX_HANDSHAKES_PER_ADDR},
        {"DEFAULT_HANDSHAKE_RATE", SL_DEFAULT_HANDSHAKE_RATE},
        {"DEFAULT_HANDSHAKE_TIMEOUT_MS", SL_DEFAULT_HANDSHAKE_TIMEOUT_MS},
        {"DEFAULT_IDLE_TIMEOUT_MS", SL_DEFAULT_IDLE_TIMEOUT_MS},
        {"DEFAULT_FRAME_TIMEOUT_MS", SL_DEFAULT_FRAME_TIMEOUT_MS},
        {"DEFAULT_MAX_MEMORY", SL_DEFAULT_MAX_MEMORY},
        {"DEFAULT_MAX_FILE_SIZE", SL_DEFAULT_MAX_FILE_SIZE},
        {"DEFAULT_MAX_FILES_TOTAL", SL_DEFAULT_MAX_FILES_TOTAL},
        {"DEFAULT_MAX_MESSAGE", SL_DEFAULT_MAX_MESSAGE},
        {"DEFAULT_TIMEOUT_MS", SL_DEFAULT_TIMEOUT_MS},
        {"DEFAULT_KEEPALIVE_MS", SL_DEFAULT_KEEPALIVE_MS},
        {"DEFAULT_CHAT_ROOMS", SL_DEFAULT_CHAT_ROOMS},
        {"DEFAULT_CHAT_MEMBERS", SL_DEFAULT_CHAT_MEMBERS},
        {"DEFAULT_CHAT_RATE", SL_DEFAULT_CHAT_RATE},
        {"DEFAULT_CHAT_QUEUE", SL_DEFAULT_CHAT_QUEUE},
    };
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
        size_t open = text.find('{', i), close = open == std::string::npos ? open : text.find('}', open);
        if (close == std::string::npos) break;
        std::string name = text.substr(open + 1, close - open - 1), unit;
        if (size_t colon = name.find(':'); colon != std::string::npos) {
            unit = name.substr(colon + 1);
            name.resize(colon);
        }
        out += text.substr(i, open - i);
        bool found = false;
        for (const auto &d : kDefaults)
            if (name == d.first) {
                out += std::to_string(unit == "s" ? d.second / 1000 : unit == "MiB" ? d.second >> 20 : d.second);
                found = true;
            }
        if (!found) out += text.substr(open, close - open + 1);
        i = close + 1;
    }
    return out + text.substr(i);
}

inline std::string help_text(const char *prog, const spec::Program &p) {
    std::string out = std::string("usage: ") + prog + " " + p.usage + "\n\n" + p.about + "\n\noptions:\n";
    for (size_t i = 0; i < p.n_flags; ++i) {
        const spec::Flag &f = p.flags[i];
        if (f.python_only) continue;
        std::string head = std::string(*f.short_name ? std::string("-") + f.short_name + ", " : "") + "--" + f.name +
                           (*f.value ? std::string(" ") + f.value : "");
        std::string help = expand_defaults(f.help), indent(27, ' ');
        for (size_t nl = help.find('\n'); nl != std::string::npos; nl = help.find('\n', nl + 1 + indent.size()))
            help.insert(nl + 1, indent);
        if (head.size() <= 23)
            out += "  " + head + std::string(25 - head.size(), ' ') + help + "\n";
        else
            out += "  " + head + "\n" + indent + help + "\n";
    }
    return out + "\n" + p.epilog + "\n";
}

// Minimal GNU-style flag parser over the flag table: --name value, --name=value, bare --switch,
// the table's short names (-h), positionals. Anything else that starts with '-' is an unknown
// option, named (a positional that starts with '-' goes after '--').
class Args {
public:
    Args(int argc, char **argv, const char *prog, const spec::Program &program) : prog_(prog) {
        for (size_t k = 0; k < program.n_flags; ++k) {
            const spec::Flag &f = program.flags[k];
            if (f.python_only) continue;
            (*f.value ? with_value_ : switches_).push_back(f.name);
            if (*f.short_name) shorts_.push_back({f.short_name, f.name});
        }
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            if (a == "--") {
                for (++i; i < argc; ++i) positional.push_back(argv[i]);
                break;
            }
            if (a.size() < 2 || a[0] != '-') {  // "-" alone is a positional too
                positional.push_back(a);
                continue;
            }
            if (a[1] != '-') {
                std::string full;
                for (const auto &s : shorts_)
                    if (a.substr(1) == s.first) full = s.second;
                if (full.empty()) die(prog_, kUsage, "unknown option '" + a + "'" + suggestion(a.substr(1, 1)) + " (see --help)");
                a = "--" + full;
            }
            std::string name = a.substr(2), value;
            size_t eq = name.find('=');
            bool has_value = eq != std::string::npos;
            if (has_value) {
                value = name.substr(eq + 1);
                name = name.substr(0, eq);
            }
            if (contains(switches_, name)) {
                if (has_value) die(prog_, kUsage, "--" + name + " takes no value (see --help)");
                flags_.push_back({name, ""});
            } else if (contains(with_value_, name)) {
                if (!has_value) {
                    if (i + 1 >= argc) die(prog_, kUsage, "--" + name + " needs a value (see --help)");
                    value = argv[++i];
                }
                flags_.push_back({name, value});
            } else {
                die(prog_, kUsage, "unknown option '" + a + "' (see --help)");
            }
        }
    }
    bool has(const std::string &name) const {
        for (const auto &f : flags_)
            if (f.first == name) return true;
        return false;
    }
    std::optional<std::string> get(const std::string &name) const {
        std::optional<std::string> v;
        for (const auto &f : flags_)
            if (f.first == name) v = f.second;
        return v;
    }
    std::vector<std::string> all(const std::string &name) const {
        std::vector<std::string> v;
        for (const auto &f : flags_)
            if (f.first == name) v.push_back(f.second);
        return v;
    }
    unsigned long number(const std::string &name, unsigned long dflt, unsigned long min, unsigned long max) const {
        auto v = get(name);
        return v ? parse_number("--" + name, *v, min, max) : dflt;
    }
    unsigned long parse_number(const std::string &what, const std::string &v, unsigned long min, unsigned long max) const {
        char *end = nullptr;
        errno = 0;
        unsigned long n = std::strtoul(v.c_str(), &end, 10);
        if (v.empty() || v[0] == '-' || *end != '\0' || errno != 0 || n < min || n > max)
            die(prog_, kUsage, what + " must be a number from " + std::to_string(min) + " to " + std::to_string(max) +
                                   ", not '" + v + "'");
        return n;
    }
    std::vector<std::string> positional;

private:
    // "; did you mean --port or --psk-file?" for "-p": the long options that start with its letter.
    std::string suggestion(const std::string &letter) const {
        std::vector<std::string> names;
        for (const auto *list : {&with_value_, &switches_})
            for (const auto &n : *list)
                if (n.rfind(letter, 0) == 0) names.push_back("--" + n);
        std::string out;
        for (size_t i = 0; i < names.size(); ++i)
            out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
        return names.empty() ? "" : ": options have long names; did you mean " + out + "?";
    }
    static bool contains(const std::vector<std::string> &v, const std::string &s) {
        for (const auto &x : v)
            if (x == s) return true;
        return false;
    }
    const char *prog_;
    std::vector<std::string> with_value_, switches_;
    std::vector<std::pair<std::string, std::string>> shorts_;  // (short name, long name)
    std::vector<std::pair<std::string, std::string>> flags_;
};

// No core dumps of this process (they would hold the key and messages) and, on Linux, no ptrace
// attach or /proc/PID/mem reading by other processes of the same user. Called first thing in main().
inline void no_core_dumps() {
#ifdef __linux__
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#else
    const rlimit none{0, 0};
    setrlimit(RLIMIT_CORE, &none);
#endif
}
// Wipes a buffer that held a key (OpenSSL's cleanse: explicit_bzero is not on every system).
inline void wipe(void *p, size_t n) { OPENSSL_cleanse(p, n); }

// Log lines on the screen and, with a timestamp, appended to the log file. The file may hold
// message text: it is created 0600 and never opened through a symbolic link (someone who can
// plant a link in the working directory must not make us append to, or create, another file).
class Logger {
public:
    Logger(const char *prog, const std::string &path, bool quiet) : quiet_(quiet), prog_(prog), path_(path) {
        if (path == "-" || path.empty()) return;
        int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == ELOOP)
            die(prog, kUsage, "log file '" + path + "' is a symbolic link, which is never followed (give the real "
                                  "file with --log-file PATH, or remove the link)");
        if (fd < 0 || (file_ = fdopen(fd, "a")) == nullptr)
            die(prog, kUsage, "cannot open log file '" + path + "': " + std::strerror(errno) +
                                  " (choose another with --log-file PATH, or --log-file - for none)");
        struct stat st;
        if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0)
            line(SL_LOG_WARN, "[WARN] log file " + path + " is accessible by group or others: run 'chmod 600 " + path + "'");
    }
    ~Logger() {
        if (file_ != nullptr) std::fclose(file_);
    }
    // Lines below `always` are hidden by --quiet; `always` lines (such as "Listening on") are not.
    void line(int level, const std::string &text, bool always = false) {
        if (quiet_ && level > SL_LOG_WARN && !always) return;
        std::lock_guard<std::mutex> lock(mu_);
        if (file_ != nullptr) {  // first: whoever sees a line on screen finds it in the file
            const bool ok = std::fprintf(file_, "%s %s\n", timestamp().c_str(), text.c_str()) >= 0 &&
                            std::fflush(file_) == 0;
            const int err = errno;
            if (!ok) std::clearerr(file_);
            file_status(ok, err);
        }
        FILE *screen = to_stderr_ ? stderr : stdout;
        std::fputs(text.c_str(), screen);
        std::fputc('\n', screen);
        std::fflush(screen);
    }
    // Pipe and file modes: standard output carries data, so log lines go to standard error.
    void use_stderr() { to_stderr_ = true; }
    static void callback(void *ud, int level, const char *line) { static_cast<Logger *>(ud)->line(level, line); }

private:
    // A log file that cannot be written (a full disk, /dev/full) never stops the program: the
    // failure is said on stderr once per episode, and so is the recovery.
    void file_status(bool ok, int err) {
        if (!ok) {
            ++lost_;
            if (lost_ == 1)
                std::fprintf(stderr, "%s: warning: cannot write the log file %s: %s (serving goes on; lines are lost "
                                     "until it can be written again)\n", prog_, path_.c_str(), std::strerror(err));
        } else if (lost_ != 0) {
            std::fprintf(stderr, "%s: the log file %s is written again (%lu lines were lost)\n", prog_, path_.c_str(),
                         lost_);
            lost_ = 0;
        }
    }
    static std::string timestamp() {
        timeval tv;
        gettimeofday(&tv, nullptr);
        tm t;
        localtime_r(&tv.tv_sec, &t);
        char buf[48];
        size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &t);
        std::snprintf(buf + n, sizeof buf - n, ".%03ld", static_cast<long>(tv.tv_usec / 1000));
        return buf;
    }
    bool quiet_, to_stderr_ = false;
    const char *prog_;
    std::string path_;
    unsigned long lost_ = 0;  // lines not written to the file since the last one that was
    FILE *file_ = nullptr;
    std::mutex mu_;
};

// True when the key comes from the default location (no --psk-file, no SECLINK_PSK_FILE):
// only then may a missing key be created on first use.
inline bool default_key_location(const std::optional<std::string> &explicit_path) {
    const char *env = std::getenv("SECLINK_PSK_FILE");
    return (!explicit_path || explicit_path->empty()) && (env == nullptr || env[0] == '\0');
}

inline std::string key_path(const char *prog, const std::optional<std::string> &explicit_path) {
    char buf[4096];
    int rc = sl_key_path(explicit_path ? explicit_path->c_str() : nullptr, buf, sizeof buf, nullptr);
    if (rc != SL_OK) die(prog, kKey, "cannot work out where the key file is (set HOME or use --psk-file): " + describe(rc));
    return buf;
}

// --keygen: writes a new key and says where. Never overwrites.
[[noreturn]] inline void keygen(const char *prog, const std::string &path) {
    int rc = sl_key_generate(path.c_str(), nullptr);
    if (rc == SL_EKEY_EXISTS)
        die(prog, kKey, "a key file already exists at " + path + " (remove it first to replace it; it is never overwritten)");
    if (rc != SL_OK) die(prog, kKey, "cannot create a key file at " + path + ": " + describe(rc));
    std::printf("[INFO] New pre-shared key written to %s (mode 0600)\n", path.c_str());
    std::printf("[INFO] Copy this file to every machine that must talk to each other; keep it secret.\n");
    std::exit(kOk);
}

// Loads the key. If none exists at the *default* location, creates it there and says so, so
// that a server and a client on one machine work with no set-up.
inline void load_key(const char *prog, const std::string &path, bool is_default, Logger &log, uint8_t key[SL_KEY_BYTES]) {
    unsigned warnings = 0;
    int rc = sl_key_load_ex(path.c_str(), key, &warnings);
    if (rc == SL_EKEY_NOT_FOUND && is_default) {
        rc = sl_key_generate(path.c_str(), key);
        if (rc == SL_OK) {
            log.line(SL_LOG_INFO, "[INFO] No key found: created a new pre-shared key at " + path +
                                      " (copy it to the other side to talk across machines)");
            return;
        }
        if (rc == SL_EKEY_EXISTS) rc = sl_key_load_ex(path.c_str(), key, &warnings);  // another program was faster
    }
    if (rc != SL_OK) die(prog, kKey, "key file " + path + ": " + describe(rc));
    if (warnings & SL_KEY_WARN_OTHER_OWNER)
        log.line(SL_LOG_WARN, "[WARN] key file " + path + " (or its directory) belongs to another user: loaded only because "
                                  "root may read any key (run the program as the key's owner instead)");
}

// Key rotation (docs/PROTOCOL.md 12): the key files several --psk-file flags stand for, in order;
// a directory stands for its files whose names do not start with '.', sorted by name.
inline std::vector<std::string> key_files(const char *prog, const std::vector<std::string> &given) {
    std::vector<std::string> out;
    for (const auto &p : given) {
        struct stat st;
        if (lstat(p.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            out.push_back(p);
            continue;
        }
        DIR *d = opendir(p.c_str());
        if (d == nullptr) die(prog, kKey, "cannot read the key directory " + p + ": " + std::strerror(errno));
        std::vector<std::string> names;
        while (const dirent *e = readdir(d))
            if (e->d_name[0] != '.') names.emplace_back(e->d_name);
        closedir(d);
        if (names.empty()) die(prog, kKey, p + ": a key directory with no key files in it");
        std::sort(names.begin(), names.end());
        for (const auto &n : names) out.push_back(p + (p.back() == '/' ? "" : "/") + n);
    }
    return out;
}

// The server's keys, one after the other, and their files: every --psk-file (key rotation), or
// the one key at --psk-file or the default location (created there on first use). *rotation: the
// former, where the log names the key file each session used.
inline std::vector<std::string> server_keys(const char *prog, const Args &args, Logger &log, std::vector<uint8_t> &keys,
                                            bool *rotation) {
    const auto given = args.all("psk-file");
    struct stat st;
    if (given.size() <= 1 && !(given.size() == 1 && lstat(given[0].c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
        const auto flag = args.get("psk-file");
        const std::string path = key_path(prog, flag);
        keys.resize(SL_KEY_BYTES);
        load_key(prog, path, default_key_location(flag), log, keys.data());
        *rotation = false;
        return {path};
    }
    auto files = key_files(prog, given);
    if (files.size() > SL_MAX_PSKS)
        die(prog, kUsage, std::to_string(files.size()) + " key files: a server accepts at most " +
                              std::to_string(SL_MAX_PSKS) + " at once (remove the keys no client uses any more)");
    keys.resize(files.size() * SL_KEY_BYTES);
    *rotation = true;
    for (size_t i = 0; i < files.size(); ++i) load_key(prog, files[i], false, log, keys.data() + i * SL_KEY_BYTES);
    return files;
}

}  // namespace app
