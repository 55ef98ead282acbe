// loadgen: the command line. Options, the protocols and modes it names, the --help text, and
// parse_options(), which checks every flag and exits with status 2 and the usage on a bad one.
#pragma once

#include <cstddef>
#include <string>

namespace loadgen {

enum class Proto { Seclink, SeclinkTls, Raw, TlsRaw, Cbc };
enum class Mode { RR, Idle, Sessions };

const char *proto_name(Proto p);
const char *mode_name(Mode m);

struct Options {
    std::string host = "127.0.0.1";
    unsigned port = 0;
    Proto proto = Proto::Seclink;
    Mode mode = Mode::RR;
    unsigned conns = 16;
    size_t size = 64;
    double seconds = 5;
    double warmup = 0.5;
    unsigned parallel = 16;
    unsigned threads = 1;
    unsigned ramp = 256;
    unsigned idle_msgs = 1;
    double hold = 1.0;
    double timeout = 60;
    std::string psk_file, tls_ca;
    bool expect_echo = false, expect_given = false;
    bool cbc_reseal = false;
    long server_pid = 0;
};

// The protocol families: the seclink/1 engine, or u32be-framed echoes, possibly inside TLS.
inline bool is_seclink(Proto p) { return p == Proto::Seclink || p == Proto::SeclinkTls; }
inline bool is_raw(Proto p) { return p == Proto::Raw || p == Proto::TlsRaw; }
inline bool is_tls(Proto p) { return p == Proto::SeclinkTls || p == Proto::TlsRaw; }

// Connections open at once: --parallel for sessions, else --conns.
inline unsigned live_conns(const Options &o) { return o.mode == Mode::Sessions ? o.parallel : o.conns; }

Options parse_options(int argc, char **argv);

}  // namespace loadgen
