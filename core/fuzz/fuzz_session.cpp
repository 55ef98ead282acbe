// libFuzzer target: the session layer (sl_policy, sl_session) under an arbitrary mix of bytes,
// time steps and events, next to a real client that holds the key.
//
// Input: one byte of options, then operations (each a byte, some with an argument byte):
//   feed raw bytes, let the real client send a message, advance the clock (and tick when due),
//   end of stream, an I/O error, a server shutdown, hand the session's output to the client.
// Invariants checked (abort on failure):
//   - consumed never exceeds the input; the status never goes back (OPEN -> CLOSING -> CLOSED);
//   - authenticity: every message the session hands out is the next one the real client sent,
//     so bytes the fuzzer made up or changed never become a message;
//   - a message is handed out only once the session logged "handshake complete";
//   - after sl_session_close, the policy's counters and memory budget are all back to 0.
// Options bit 3: a chat server (tiny queue and rate), whose lines come from the input, so the
// chat line parser (commands, names, UTF-8 rules) sees arbitrary bytes.
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "seclink/seclink.h"

namespace {

const uint8_t kPsk[32] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                          7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};

void check(bool ok) {
    if (!ok) std::abort();
}

struct Log {
    bool authenticated = false;
    static void fn(void *ud, int, const char *line) {
        if (std::strstr(line, " handshake complete") != nullptr) static_cast<Log *>(ud)->authenticated = true;
    }
};

int app_handler(void *, const char *, const uint8_t *, size_t, sl_buf *) { return 0; }  // never called

struct Run {
    Log log;
    sl_policy *policy = nullptr;
    sl_session *s = nullptr;
    sl_conn *client = nullptr;
    std::deque<std::string> sent;  // what the real client sent, not yet handed out
    int64_t now = 1000;
    int last_status = SL_SESSION_OPEN;
    bool chat_ = false;

    void feed(const uint8_t *p, size_t n) {
        size_t off = 0;
        while (off < n && sl_session_status(s) == SL_SESSION_OPEN) {
            size_t used = 0, mlen = 0;
            const uint8_t *msg = nullptr;
            int rc = sl_session_feed(s, p + off, n - off, now, &used, &msg, &mlen);
            if (rc == SL_ESTATE) return;  // waiting for admission: the driver would not read
            check(rc == SL_OK && used <= n - off);
            off += used;
            if (msg != nullptr) {
                check(log.authenticated && !chat_);
                check(!sent.empty() && sent.front() == std::string(reinterpret_cast<const char *>(msg), mlen));
                sent.pop_front();
                check(sl_session_reply(s, msg, mlen > 8 ? 8 : mlen, now) == SL_OK);
            }
            if (used == 0 && msg == nullptr) return;
        }
    }
    void to_client() {
        const uint8_t *p = nullptr;
        size_t n = 0;
        check(sl_session_pending(s, &p, &n) == SL_OK);
        std::vector<uint8_t> out(p, p + n);
        check(sl_session_consume(s, n, now) == SL_OK);
        for (size_t off = 0; off < out.size();) {
            size_t used = 0;
            sl_event ev;
            if (sl_conn_feed(client, out.data() + off, out.size() - off, &used, &ev) != SL_OK) break;
            off += used;
        }
    }
    void from_client() {
        const uint8_t *p = nullptr;
        size_t n = 0;
        sl_conn_pending(client, &p, &n);
        std::vector<uint8_t> out(p, p + n);
        sl_conn_consume(client, n);
        feed(out.data(), out.size());
    }
    void observe() {
        const int st = sl_session_status(s);
        check(st >= last_status);
        last_status = st;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t opts = data[0];
    Run r;
    sl_server_config cfg;
    sl_server_config_init(&cfg);
    cfg.psk = kPsk;
    cfg.max_message = 4096;
    cfg.max_memory = 16 * 1024;
    cfg.max_handshakes = 2;
    cfg.handshake_rate = 4;
    cfg.handshake_timeout_ms = 100;
    cfg.idle_timeout_ms = 300;
    cfg.frame_timeout_ms = 200;
    cfg.tls = opts & 1;
    cfg.redact = (opts >> 1) & 1;
    cfg.handler = app_handler;
    cfg.log = Log::fn;
    cfg.log_ud = &r.log;
    cfg.log_level = SL_LOG_TRACE;
    const bool chat = (opts >> 3) & 1;
    cfg.chat = chat;
    cfg.chat_queue = 4;
    cfg.chat_rate = 5;
    cfg.chat_rooms = 2;
    r.chat_ = chat;
    check(sl_policy_new(&r.policy, &cfg) == SL_OK);
    check(sl_session_new(&r.s, r.policy, "192.0.2.1:1", r.now) == SL_OK);
    check(sl_conn_new(&r.client, SL_CLIENT, kPsk) == SL_OK);
    sl_conn_set_max_message(r.client, 4096);
    check(sl_conn_start(r.client) == SL_OK);
    if (opts & 4) r.from_client();  // frame 1 first: most runs should get past the handshake

    for (size_t i = 1; i < size; ++i) {
        const uint8_t op = data[i] % 8, arg = i + 1 < size ? data[i + 1] : 0;
        switch (op) {
        case 0: {  // raw bytes from the fuzzer
            size_t n = arg;
            if (n > size - i - 2) n = size > i + 2 ? size - i - 2 : 0;
            r.feed(data + i + 2, n);
            i += 1 + n;
            break;
        }
        case 1:  // the real client's pending bytes (handshake, PING, messages)
            r.from_client();
            break;
        case 2:  // the real client sends a message (chat: a line of the input's next bytes)
            if (sl_conn_is_established(r.client) && !sl_conn_is_closed(r.client)) {
                std::string m(arg % 64, static_cast<char>('a' + arg % 26));
                if (chat) {
                    const size_t n = std::min<size_t>(arg % 64, size > i + 2 ? size - i - 2 : 0);
                    m.assign(reinterpret_cast<const char *>(data + i + 2), n);
                    i += n;
                }
                if (sl_conn_send(r.client, SL_MSG_DATA, reinterpret_cast<const uint8_t *>(m.data()), m.size()) == SL_OK &&
                    !chat)
                    r.sent.push_back(m);  // (a chat server hands no message to an application)
            }
            ++i;
            break;
        case 3:  // time passes
            r.now += arg * 4;
            if (r.now >= sl_session_deadline(r.s)) sl_session_tick(r.s, r.now);
            check(sl_session_deadline(r.s) >= r.now);
            ++i;
            break;
        case 4: sl_session_feed_eof(r.s, r.now); break;
        case 5: sl_session_io_error(r.s, SL_ESOCKET, arg & 1, r.now); ++i; break;
        case 6: sl_session_shutdown(r.s, r.now); break;
        default: r.to_client(); break;
        }
        r.observe();
    }
    sl_session_close(r.s);
    check(sl_policy_memory(r.policy) == 0 && sl_policy_connections(r.policy) == 0);
    check(sl_policy_sessions(r.policy) == 0 && sl_policy_handshakes(r.policy) == 0);
    sl_session_free(r.s);
    sl_conn_free(r.client);
    sl_policy_free(r.policy);
    return 0;
}
