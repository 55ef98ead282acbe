// The native server and client through the C ABI, in one process over 127.0.0.1: handlers,
// logs, limits, stop. (The programs built on them are tested end to end in tests/programs.)
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <thread>

#if defined(__linux__)
#include <dirent.h>
#include <sched.h>
#endif

#include "session.hpp"
#include "test_util.hpp"

using namespace sltest;

namespace {

struct LogSink {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> lines;
    static void fn(void *ud, int, const char *line) {
        auto *s = static_cast<LogSink *>(ud);
        {
            std::lock_guard<std::mutex> lock(s->mu);
            s->lines.emplace_back(line);
        }
        s->cv.notify_all();
    }
    // Waits (at most 5 s) for a line containing `needle`.
    bool has(const std::string &needle) {
        std::unique_lock<std::mutex> lock(mu);
        return cv.wait_for(lock, std::chrono::seconds(5), [&] {
            for (const auto &l : lines)
                if (l.find(needle) != std::string::npos) return true;
            return false;
        });
    }
};

const auto kPsk = key_of(0x5c);

// Reverses each message; a message "fail" makes the handler fail.
int reverse_handler(void *, const char *, const uint8_t *data, size_t len, sl_buf *reply) {
    if (len == 4 && std::string(reinterpret_cast<const char *>(data), 4) == "fail") return 1;
    std::vector<uint8_t> r(data, data + len);
    std::reverse(r.begin(), r.end());
    return sl_buf_append(reply, r.data(), r.size());
}

class NativeIoTest : public ::testing::Test {
protected:
    int chat = 0;                           // start() a chat server
    const char *password_users = nullptr;   // start() a server with password users...
    const uint8_t *server_key = nullptr;    // ...and this static key
    void start(sl_handler_fn handler = nullptr, unsigned max_clients = 0) {
        sl_server_config cfg;
        sl_server_config_init(&cfg);
        cfg.host = "127.0.0.1";
        cfg.port = 0;
        cfg.psk = kPsk.data();
        cfg.threads = 2;
        cfg.handler = handler;
        cfg.chat = chat;
        cfg.password_users = password_users;
        cfg.server_key = server_key;
        if (max_clients) cfg.max_clients = max_clients;
        cfg.log = LogSink::fn;
        cfg.log_ud = &log;
        ASSERT_EQ(sl_server_new(&server, &cfg), SL_OK);
        ASSERT_NE(sl_server_port(server), 0);
        ASSERT_EQ(sl_server_start(server), SL_OK);
    }
    int connect(sl_client **c, const std::array<uint8_t, 32> &psk = kPsk,
                const std::function<void(sl_client_config &)> &tune = nullptr) {
        sl_client_config cfg;
        sl_client_config_init(&cfg);
        cfg.host = "127.0.0.1";
        cfg.port = sl_server_port(server);
        cfg.psk = psk.data();
        cfg.timeout_ms = 5000;
        if (tune) tune(cfg);
        return sl_client_connect(c, &cfg);
    }
    static std::string request(sl_client *c, const std::string &msg, int *type_out = nullptr) {
        EXPECT_EQ(sl_client_send(c, SL_MSG_DATA, reinterpret_cast<const uint8_t *>(msg.data()), msg.size()), SL_OK);
        int type = 0;
        const uint8_t *data = nullptr;
        size_t len = 0;
        int rc = sl_client_recv(c, 5000, &type, &data, &len);
        if (type_out) *type_out = type;
        return rc == SL_OK ? std::string(reinterpret_cast<const char *>(data), len) : "error " + std::string(sl_errname(rc));
    }
    void TearDown() override { sl_server_free(server); }
    sl_server *server = nullptr;
    LogSink log;
};

}  // namespace

TEST_F(NativeIoTest, DefaultReplyIsAnAck) {
    start();
    sl_client *c = nullptr;
    ASSERT_EQ(connect(&c), SL_OK);
    EXPECT_EQ(request(c, "hello"), "ACK: received 5 bytes");
    EXPECT_EQ(request(c, ""), "ACK: received 0 bytes");
    EXPECT_EQ(sl_client_close(c, "bye"), SL_OK);
    sl_client_free(c);
    EXPECT_TRUE(log.has("[RECV] 127.0.0.1:"));
    EXPECT_TRUE(log.has(" #1 hello (5 bytes)"));
    EXPECT_TRUE(log.has("disconnected: client closed the session (bye)"));
}

TEST_F(NativeIoTest, HandlerRepliesAndAFailingHandlerClosesOnlyItsSession) {
    start(reverse_handler);
    sl_client *a = nullptr, *b = nullptr;
    ASSERT_EQ(connect(&a), SL_OK);
    ASSERT_EQ(connect(&b), SL_OK);
    EXPECT_EQ(request(a, "stressed"), "desserts");
    int type = 0;
    std::string reason = request(b, "fail", &type);
    EXPECT_EQ(type, SL_MSG_CLOSE);
    EXPECT_EQ(reason, "server error");
    EXPECT_EQ(request(a, "live"), "evil") << "the other session is unaffected";
    sl_client_free(a);
    sl_client_free(b);
}

TEST_F(NativeIoTest, WrongPskIsRefusedAndLogged) {
    start();
    sl_client *c = nullptr;
    EXPECT_EQ(connect(&c, key_of(1)), SL_EPEER_CLOSED);
    EXPECT_EQ(c, nullptr);
    EXPECT_TRUE(log.has("handshake failed: HANDSHAKE_AUTH"));
}

TEST_F(NativeIoTest, OverTheClientLimitIsToldServerFull) {
    start(nullptr, 1);
    sl_client *a = nullptr, *b = nullptr;
    ASSERT_EQ(connect(&a), SL_OK);
    ASSERT_EQ(request(a, "x"), "ACK: received 1 bytes");
    ASSERT_EQ(connect(&b), SL_OK);
    int type = 0;
    EXPECT_EQ(request(b, "y", &type), "server full: try again later");
    EXPECT_EQ(type, SL_MSG_CLOSE);
    sl_client_free(b);
    // b's connection ends on the server once it has flushed the CLOSE; a stays.
    for (int i = 0; i < 500 && sl_server_sessions(server) != 1u; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(sl_server_sessions(server), 1u);
    sl_client_free(a);
}

TEST_F(NativeIoTest, StopSendsCloseToOpenSessions) {
    start();
    sl_client *c = nullptr;
    ASSERT_EQ(connect(&c), SL_OK);
    ASSERT_EQ(request(c, "x"), "ACK: received 1 bytes");
    sl_server_stop(server);
    int type = 0;
    const uint8_t *data = nullptr;
    size_t len = 0;
    ASSERT_EQ(sl_client_recv(c, 5000, &type, &data, &len), SL_OK);
    EXPECT_EQ(type, SL_MSG_CLOSE);
    EXPECT_EQ(std::string(reinterpret_cast<const char *>(data), len), "server shutting down");
    EXPECT_EQ(sl_server_wait(server), SL_OK);
    sl_client_free(c);
}

TEST_F(NativeIoTest, ConnectErrorsAreSpecific) {
    start();
    const uint16_t port = sl_server_port(server);
    sl_server_free(server);  // nothing listens there any more
    server = nullptr;
    sl_client_config cfg;
    sl_client_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = port;
    cfg.psk = kPsk.data();
    sl_client *c = nullptr;
    EXPECT_EQ(sl_client_connect(&c, &cfg), SL_ECONNREFUSED);
    cfg.host = "no-such-host.invalid";
    EXPECT_EQ(sl_client_connect(&c, &cfg), SL_ERESOLVE);
    cfg.psk = nullptr;
    EXPECT_EQ(sl_client_connect(&c, &cfg), SL_EINVAL);
}

TEST_F(NativeIoTest, PortInUseIsReported) {
    start();
    sl_server_config cfg;
    sl_server_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = sl_server_port(server);
    cfg.psk = kPsk.data();
    sl_server *other = nullptr;
    EXPECT_EQ(sl_server_new(&other, &cfg), SL_EADDRINUSE);
    EXPECT_EQ(other, nullptr);
}

// Many clients on every worker at once, coming and going, with a handler, then a stop in the
// middle of the traffic: what ThreadSanitizer (make test-tsan) watches for data races.
TEST_F(NativeIoTest, ConcurrentClientsComingAndGoingWhileTheServerStops) {
    start([](void *, const char *, const uint8_t *data, size_t len, sl_buf *reply) {
        return sl_buf_append(reply, data, len);  // echo
    });
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < 5; ++round) {
                sl_client *c = nullptr;
                if (connect(&c) != SL_OK) continue;
                const std::string msg = "thread " + std::to_string(t) + " round " + std::to_string(round);
                if (request(c, msg) == msg) ++good;
                sl_client_close(c, "done");
                sl_client_free(c);
            }
        });
    }
    for (auto &th : threads) th.join();
    EXPECT_EQ(good.load(), 40) << "every echo correct";
    sl_client *late = nullptr;
    ASSERT_EQ(connect(&late), SL_OK);
    ASSERT_EQ(request(late, "x"), "x");
    std::thread stopper([&] { sl_server_stop(server); });
    int type = 0;
    const uint8_t *data = nullptr;
    size_t len = 0;
    EXPECT_EQ(sl_client_recv(late, 5000, &type, &data, &len), SL_OK);
    EXPECT_EQ(type, SL_MSG_CLOSE);
    stopper.join();
    EXPECT_EQ(sl_server_wait(server), SL_OK);
    sl_client_free(late);
}

TEST(FormatTest, MessagesShowTextEmptyOrBinary) {
    char buf[300];
    auto show = [&](const std::string &s) {
        sl_format_message(reinterpret_cast<const uint8_t *>(s.data()), s.size(), buf, sizeof buf);
        return std::string(buf);
    };
    EXPECT_EQ(show("hello"), "hello");
    EXPECT_EQ(show("h\xc3\xa9llo \xe2\x9c\x93"), "h\xc3\xa9llo \xe2\x9c\x93");
    EXPECT_EQ(show(""), "<empty>");
    EXPECT_EQ(show(std::string("a\0b", 3)), "<binary>");
    EXPECT_EQ(show("bad \xff utf8"), "<binary>");
    EXPECT_EQ(show("line\nbreak"), "line\\nbreak") << "a line break is written \\n: it cannot forge a log line";
    EXPECT_EQ(show("a\x1b[2Jb"), "<binary>") << "other control characters could forge log lines";
    EXPECT_EQ(show(std::string(500, 'x')), std::string(200, 'x') + "...");
}

// Chat lines cross worker threads only through the member's queue and its own worker's wake-up
// (make test-tsan runs this under ThreadSanitizer): 4 members on 2 workers, each hears every line
// once, in each speaker's order.
TEST_F(NativeIoTest, ChatLinesCrossWorkerThreadsThroughTheMembersQueues) {
    chat = 1;
    start();
    constexpr int kMembers = 4, kLines = 15;
    sl_client *c[kMembers] = {};
    auto next_line = [](sl_client *cl) {
        int type = 0;
        const uint8_t *data = nullptr;
        size_t len = 0;
        EXPECT_EQ(sl_client_recv(cl, 5000, &type, &data, &len), SL_OK);
        return type == SL_MSG_DATA ? std::string(reinterpret_cast<const char *>(data), len) : std::string("<not DATA>");
    };
    for (int i = 0; i < kMembers; ++i) {
        ASSERT_EQ(connect(&c[i]), SL_OK);
        const std::string me = "guest" + std::to_string(i + 1);
        EXPECT_EQ(next_line(c[i]), "* you are " + me);
        for (int j = 0; j <= i; ++j) EXPECT_EQ(next_line(c[j]), "* " + me + " joined lobby");
    }
    for (int n = 0; n < kLines; ++n)
        for (int i = 0; i < kMembers; ++i) {
            const std::string line = std::to_string(n);
            ASSERT_EQ(sl_client_send(c[i], SL_MSG_DATA, reinterpret_cast<const uint8_t *>(line.data()), line.size()),
                      SL_OK);
        }
    for (int i = 0; i < kMembers; ++i) {
        std::vector<int> next(kMembers, 0);  // the next line expected from each speaker
        for (int k = 0; k < kMembers * kLines; ++k) {
            const std::string got = next_line(c[i]);
            const size_t close = got.find("] ");
            ASSERT_TRUE(got.rfind("[guest", 0) == 0 && close != std::string::npos) << got;
            const int from = std::stoi(got.substr(6, close - 6)) - 1;
            ASSERT_TRUE(from >= 0 && from < kMembers) << got;
            EXPECT_EQ(got.substr(close + 2), std::to_string(next[from]++)) << "member " << i << " got " << got;
        }
    }
    for (auto *cl : c) {
        sl_client_close(cl, nullptr);
        sl_client_free(cl);
    }
}

// The default worker count: one per CPU less one, at least one (seclink.h).
TEST(DefaultThreads, OnePerCpuLessOneAtLeastOne) {
    EXPECT_EQ(seclink::detail::default_threads(0), 1u);  // unknown
    EXPECT_EQ(seclink::detail::default_threads(1), 1u);
    EXPECT_EQ(seclink::detail::default_threads(2), 1u);
    EXPECT_EQ(seclink::detail::default_threads(3), 2u);
    EXPECT_EQ(seclink::detail::default_threads(64), 63u);
#if defined(__linux__)
    cpu_set_t set;
    ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
    EXPECT_EQ(sl_server_default_threads(), seclink::detail::default_threads(static_cast<unsigned>(CPU_COUNT(&set))));
#endif
}

#if defined(__linux__)
// Threads of this process now (/proc/self/task has one entry per thread).
static size_t thread_count() {
    size_t n = 0;
    if (DIR *d = opendir("/proc/self/task")) {
        while (dirent *e = readdir(d)) n += e->d_name[0] != '.';
        closedir(d);
    }
    return n;
}

// A server configured with threads 0 starts exactly that many workers, and no other thread.
TEST(DefaultThreads, AServerWithThreadsZeroStartsTheDefault) {
    sl_server_config cfg;
    sl_server_config_init(&cfg);
    EXPECT_EQ(cfg.threads, 0u);
    cfg.host = "127.0.0.1";
    cfg.psk = kPsk.data();
    sl_server *s = nullptr;
    ASSERT_EQ(sl_server_new(&s, &cfg), SL_OK);
    const size_t before = thread_count();
    ASSERT_EQ(sl_server_start(s), SL_OK);
    EXPECT_EQ(thread_count() - before, sl_server_default_threads());
    sl_server_free(s);
    EXPECT_EQ(thread_count(), before);
}
#endif

// Password logins through the native server (PROTOCOL.md 16): the check runs on the policy's
// checker thread, which wakes the session's worker; a message sent right behind the AUTH is
// answered after the verdict, a wrong password gets its CLOSE, and PSK clients are served
// meanwhile.
TEST_F(NativeIoTest, PasswordLoginsAreCheckedOffTheWorkersAndResumedThroughTheWake) {
    char dir[] = "/tmp/seclink-native-pw-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string users = std::string(dir) + "/users";
    const std::string pw = "s3cret";
    ASSERT_EQ(sl_users_add(users.c_str(), "bob", reinterpret_cast<const uint8_t *>(pw.data()), pw.size()), SL_OK);
    const auto priv = key_of(0x21);
    uint8_t pub[32];
    ASSERT_EQ(sl_key_public(priv.data(), pub), SL_OK);
    password_users = users.c_str();
    server_key = priv.data();
    start();
    auto login = [&](const std::string &password, sl_client **c) {
        return connect(c, kPsk, [&](sl_client_config &cfg) {
            cfg.mode = SL_MODE_PASSWORD;
            cfg.server_key = pub;
            cfg.user = "bob";
            cfg.password = reinterpret_cast<const uint8_t *>(password.data());
            cfg.password_len = password.size();
        });
    };
    sl_client *bob = nullptr, *wrong = nullptr, *other = nullptr;
    ASSERT_EQ(login(pw, &bob), SL_OK);  // its AUTH is on its way: the reply waits for the verdict
    ASSERT_EQ(login("guess", &wrong), SL_OK);
    ASSERT_EQ(connect(&other), SL_OK);
    EXPECT_EQ(request(other, "psk"), "ACK: received 3 bytes");
    EXPECT_EQ(request(bob, "hi"), "ACK: received 2 bytes");
    int type = 0;
    EXPECT_EQ(request(wrong, "x", &type), "wrong user or password");
    EXPECT_EQ(type, SL_MSG_CLOSE);
    EXPECT_TRUE(log.has("[INFO] bob@127.0.0.1:"));
    EXPECT_TRUE(log.has("refused: wrong user or password (user bob)"));
    sl_client_free(bob);
    sl_client_free(wrong);
    sl_client_free(other);
    std::remove(users.c_str());
    rmdir(dir);
}
