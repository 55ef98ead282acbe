// Password users (PROTOCOL.md 16): mode 4 reproduced from the vectors, the users file, and the
// session layer's checks and limits on failed attempts.
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "identity_util.hpp"

using namespace sltest;

namespace {

// A policy for the password users in `path`, with the tests' PSK and server key.
struct PasswordServer {
    const Bytes psk = Bytes(32, 4), server_priv = Bytes(32, 5);
    uint8_t server_pub[32] = {};
    Logs logs;
    sl_policy *policy = nullptr;
    PasswordServer(const std::string &path, int log_level) {
        EXPECT_EQ(sl_key_public(server_priv.data(), server_pub), SL_OK);
        sl_server_config cfg = identity_config(psk, server_priv, logs);
        cfg.password_users = path.c_str();
        cfg.log_level = log_level;
        EXPECT_EQ(sl_policy_new(&policy, &cfg), SL_OK);
    }
    ~PasswordServer() { sl_policy_free(policy); }
};

}  // namespace

TEST(PasswordVectorTest, Mode4ConnectionAndAuthReproducedByteForByte) {
    const nlohmann::json v = project_vectors("seclink_v1_password.json");
    const Bytes psk = unhex(v["psk"]), ce = unhex(v["client_ephemeral"]), se = unhex(v["server_ephemeral"]);
    const Bytes ss = unhex(v["server_static"]), sp = unhex(v["server_static_public"]);
    const std::string user = v["user"], password = v["password"];
    sl_conn *client = identity_client(psk, SL_MODE_PASSWORD, sp.data(), nullptr, user, password, &ce);
    sl_conn *server = vector_server(psk, se, ss);
    const auto &w = v["wire"];
    EXPECT_EQ(hex(take_output(client)), w[0]["bytes"].get<std::string>());
    ASSERT_TRUE(feed_all(server, unhex(w[0]["bytes"])).handshake_done);
    EXPECT_EQ(hex(take_output(server)), w[1]["bytes"].get<std::string>());
    ASSERT_TRUE(feed_all(client, unhex(w[1]["bytes"])).handshake_done);
    EXPECT_EQ(hex(take_output(client)), w[2]["bytes"].get<std::string>()) << "AUTH, not a PING";
    FeedResult r = feed_all(server, unhex(w[2]["bytes"]));
    ASSERT_EQ(r.rc, SL_OK);
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(r.msgs[0].type, SL_MSG_AUTH);
    EXPECT_EQ(hex(r.msgs[0].content), w[2]["content"].get<std::string>());
    sl_conn_free(server);
    // A first frame that is not AUTH.
    server = vector_server(psk, se, ss);
    ASSERT_EQ(feed_all(server, unhex(w[0]["bytes"])).rc, SL_OK);
    r = feed_all(server, unhex(v["malformed"][0]["bytes"]));
    EXPECT_STREQ(sl_errname(r.rc), v["malformed"][0]["error"].get<std::string>().c_str());
    EXPECT_TRUE(r.msgs.empty());
    sl_conn_free(server);
    // An AUTH from a client that did not ask for mode 4 is a bad type; it cannot send one anyway.
    EXPECT_EQ(sl_conn_send(client, SL_MSG_AUTH, nullptr, 0), SL_EINVAL);
    sl_conn_free(client);
}

TEST(PasswordTest, UsersFileRightWrongAndTooManyFailures) {
    TempDir dir;
    const std::string path = dir.file("users");
    const std::string pw = "s3cret", other = "guess";
    ASSERT_EQ(sl_users_add(path.c_str(), "bob", reinterpret_cast<const uint8_t *>(other.data()), other.size()), SL_OK);
    ASSERT_EQ(sl_users_add(path.c_str(), "bob", reinterpret_cast<const uint8_t *>(pw.data()), pw.size()), SL_OK);
    EXPECT_EQ(sl_users_add(path.c_str(), "bad name", nullptr, 0), SL_EINVAL);
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    std::ifstream f(path);
    std::string text((std::istreambuf_iterator<char>(f)), {});
    EXPECT_EQ(text.find("s3cret"), std::string::npos);
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << "the old line of bob was replaced";
    EXPECT_EQ(text.rfind("bob scrypt 16384 8 1 ", 0), 0u);

    PasswordServer srv(path, SL_LOG_TRACE);
    const Bytes &psk = srv.psk;
    const uint8_t *server_pub = srv.server_pub;
    sl_policy *policy = srv.policy;
    const Logs &logs = srv.logs;
    // One login, then a message; returns the CLOSE reason the client got, or "" when it was served.
    auto login = [&](const std::string &user, const std::string &password, const char *peer, int64_t now) {
        sl_conn *c = identity_client(psk, SL_MODE_PASSWORD, server_pub, nullptr, user, password);
        sl_session *s = nullptr;
        EXPECT_EQ(sl_session_new(&s, policy, peer, now), SL_OK);
        Waker waker;
        sl_session_set_wake(s, &Waker::fn, &waker);
        FeedResult r = exchange(c, s, waker, now);
        const std::string hi = "hi";
        if (sl_conn_send(c, SL_MSG_DATA, reinterpret_cast<const uint8_t *>(hi.data()), hi.size()) == SL_OK) {
            FeedResult more = exchange(c, s, waker, now);
            r.msgs.insert(r.msgs.end(), more.msgs.begin(), more.msgs.end());
        }
        std::string reason = "?";
        for (const auto &m : r.msgs) {
            if (m.type == SL_MSG_CLOSE) reason = std::string(m.content.begin(), m.content.end());
            if (m.type == SL_MSG_DATA) reason = "";
        }
        sl_session_free(s);
        sl_conn_free(c);
        return reason;
    };
    EXPECT_EQ(login("bob", pw, "10.0.0.1:1", 0), "");
    EXPECT_TRUE(logs.has("[INFO] bob@10.0.0.1:1 handshake complete (mode password)"));
    EXPECT_TRUE(logs.has("[RECV] bob@10.0.0.1:1 #1 hi (2 bytes)"));
    EXPECT_EQ(login("bob", "wrong", "10.0.0.2:1", 1000), "wrong user or password");
    EXPECT_EQ(login("nobody", pw, "10.0.0.2:2", 2000), "wrong user or password");
    EXPECT_TRUE(logs.has("[WARN] 10.0.0.2:1 disconnected: refused: wrong user or password (user bob)"));
    EXPECT_EQ(login("bob", "wrong2", "10.0.0.3:1", 3000), "wrong user or password");
    EXPECT_EQ(login("bob", "wrong3", "10.0.0.4:1", 4000), "wrong user or password");
    // bob failed 3 times: refused for 60 s after the last failure, even with the right password.
    EXPECT_EQ(login("bob", pw, "10.0.0.5:1", 5000), "too many failed attempts: try again later");
    // 10.0.0.2 failed twice (bob, nobody) and one more makes 3: then it is locked out for any user.
    EXPECT_EQ(login("alice", "x", "10.0.0.2:3", 6000), "wrong user or password");
    EXPECT_EQ(login("carol", "x", "10.0.0.2:4", 7000), "too many failed attempts: try again later");
    EXPECT_EQ(login("bob", pw, "10.0.0.6:1", 4000 + 60000), "") << "the lockout ends";
    for (const auto &l : logs.lines) {
        EXPECT_EQ(l.find("s3cret"), std::string::npos) << l;
        EXPECT_EQ(l.find("wrong3"), std::string::npos) << l;
    }
}

// The password check (0.1 s of scrypt) runs on the policy's checker threads: the session that
// sent its AUTH waits without a verdict, and another session on the same (driver's) thread is
// served meanwhile; the verdict comes through the wake and pump.
TEST(PasswordTest, ThePasswordCheckRunsOffTheDriversThreadAndTheVerdictComesThroughTheWake) {
    TempDir dir;
    const std::string path = dir.file("users");
    const std::string pw = "s3cret";
    ASSERT_EQ(sl_users_add(path.c_str(), "bob", reinterpret_cast<const uint8_t *>(pw.data()), pw.size()), SL_OK);
    PasswordServer srv(path, SL_LOG_MSG);
    const Bytes &psk = srv.psk;
    const uint8_t *server_pub = srv.server_pub;
    sl_policy *policy = srv.policy;
    const Logs &logs = srv.logs;
    auto feed = [](sl_session *s, const Bytes &in, int64_t now) {
        size_t used = 0, mlen = 0;
        const uint8_t *msg = nullptr;
        EXPECT_EQ(sl_session_feed(s, in.data(), in.size(), now, &used, &msg, &mlen), SL_OK);
        return used;
    };
    auto output = [](sl_session *s, sl_conn *c) {
        const uint8_t *out = nullptr;
        size_t n = 0;
        EXPECT_EQ(sl_session_pending(s, &out, &n), SL_OK);
        FeedResult r = feed_all(c, Bytes(out, out + n));
        EXPECT_EQ(sl_session_consume(s, n, 0), SL_OK);
        return r;
    };
    // A session for a client up to the handshake's frame 2, woken through `w`.
    auto handshake = [&](sl_conn *c, const char *peer, Waker &w, int64_t now) {
        sl_session *s = nullptr;
        EXPECT_EQ(sl_session_new(&s, policy, peer, now), SL_OK);
        sl_session_set_wake(s, &Waker::fn, &w);
        feed(s, take_output(c), now);
        EXPECT_TRUE(output(s, c).handshake_done);
        return s;
    };
    sl_conn *bob = identity_client(psk, SL_MODE_PASSWORD, server_pub, nullptr, "bob", pw);
    Waker waker;
    sl_session *s = handshake(bob, "10.0.0.1:1", waker, 0);
    Bytes auth = take_output(bob);  // the AUTH, and a DATA pipelined behind it
    const std::string hi = "hi";
    ASSERT_EQ(sl_conn_send(bob, SL_MSG_DATA, reinterpret_cast<const uint8_t *>(hi.data()), hi.size()), SL_OK);
    const Bytes data = take_output(bob);
    const size_t auth_len = auth.size();
    auth.insert(auth.end(), data.begin(), data.end());
    EXPECT_EQ(feed(s, auth, 1), auth_len) << "only the AUTH is taken";
    EXPECT_TRUE(sl_session_busy(s));
    EXPECT_FALSE(sl_session_wants_read(s));
    size_t used = 0, mlen = 0;
    const uint8_t *msg = nullptr;
    EXPECT_EQ(sl_session_feed(s, data.data(), data.size(), 1, &used, &msg, &mlen), SL_ESTATE);
    EXPECT_FALSE(logs.has("handshake complete")) << "no verdict on this thread";

    // Meanwhile a PSK client on the same thread gets its answers.
    sl_conn *other = nullptr;
    ASSERT_EQ(sl_conn_new(&other, SL_CLIENT, psk.data()), SL_OK);
    ASSERT_EQ(sl_conn_start(other), SL_OK);
    Waker unused;
    sl_session *t = handshake(other, "10.0.0.2:1", unused, 1);
    Bytes ping_and_data = take_output(other);
    ASSERT_EQ(sl_conn_send(other, SL_MSG_DATA, reinterpret_cast<const uint8_t *>(hi.data()), hi.size()), SL_OK);
    const Bytes more = take_output(other);
    ping_and_data.insert(ping_and_data.end(), more.begin(), more.end());
    feed(t, ping_and_data, 2);
    FeedResult r = output(t, other);
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "ACK: received 2 bytes");

    waker.wait();  // the checker's thread: the verdict is in
    EXPECT_TRUE(sl_session_busy(s)) << "taken only on the session's own thread";
    sl_session_pump(s, 3);
    EXPECT_FALSE(sl_session_busy(s));
    EXPECT_TRUE(logs.has("[INFO] bob@10.0.0.1:1 handshake complete (mode password)"));
    EXPECT_EQ(feed(s, data, 3), data.size());  // what the driver kept
    r = output(s, bob);
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "ACK: received 2 bytes");

    // A session that goes away while its check runs is never woken.
    sl_conn *gone = identity_client(psk, SL_MODE_PASSWORD, server_pub, nullptr, "bob", pw);
    Waker never;
    sl_session *u = handshake(gone, "10.0.0.3:1", never, 4);
    feed(u, take_output(gone), 5);
    EXPECT_TRUE(sl_session_busy(u));
    sl_session_free(u);
    int woken_before = 0;  // (0, unless the check was already over)
    {
        std::lock_guard<std::mutex> lock(never.mu);
        woken_before = never.woken;
    }
    sl_session_free(s);
    sl_session_free(t);
    sl_policy_free(policy);  // joins the checker's threads: u's check ran or was skipped
    srv.policy = nullptr;
    EXPECT_EQ(never.woken, woken_before) << "no wake after the session was freed";
    sl_conn_free(bob);
    sl_conn_free(other);
    sl_conn_free(gone);
}

namespace {

// A wake that holds the checker's thread that calls it until the test opens the gate: with
// both of the checker's threads held, nothing leaves its queue.
struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    int entered = 0;
    bool open = false;
    static void fn(void *ud) {
        auto *g = static_cast<Gate *>(ud);
        std::unique_lock<std::mutex> lock(g->mu);
        ++g->entered;
        g->cv.notify_all();
        g->cv.wait(lock, [&] { return g->open; });
    }
    void wait_entered(int n) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return entered >= n; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(mu);
        open = true;
        cv.notify_all();
    }
};

}  // namespace

// The checker's queue is bounded (Checker::kQueue): a login that finds it full is refused at
// once with "server busy", not queued, and its password is not checked.
TEST(PasswordTest, AFullCheckQueueRefusesTheNextLoginWithServerBusy) {
    TempDir dir;
    const std::string path = dir.file("users");
    const std::string pw = "s3cret";
    ASSERT_EQ(sl_users_add(path.c_str(), "bob", reinterpret_cast<const uint8_t *>(pw.data()), pw.size()), SL_OK);
    Gate gate;
    Waker unused;  // (the others' wake: outlives the policy, whose threads may still call it)
    PasswordServer srv(path, SL_LOG_INFO);
    struct Opener {  // on every way out: the checker's threads go before the gate (srv's policy joins them)
        Gate &g;
        ~Opener() { g.release(); }
    } opener{gate};
    struct Login {
        sl_conn *client = nullptr;
        sl_session *session = nullptr;
    };
    // A session whose client has sent its AUTH (each from its own address: no admission limit).
    auto login = [&](int i, sl_wake_fn wake, void *ud) {
        Login l;
        l.client = identity_client(srv.psk, SL_MODE_PASSWORD, srv.server_pub, nullptr, "bob", pw);
        const std::string peer = "10.0.1." + std::to_string(i) + ":1";
        EXPECT_EQ(sl_session_new(&l.session, srv.policy, peer.c_str(), 0), SL_OK);
        sl_session_set_wake(l.session, wake, ud);
        auto feed = [&](const Bytes &in) {
            size_t used = 0, mlen = 0;
            const uint8_t *msg = nullptr;
            EXPECT_EQ(sl_session_feed(l.session, in.data(), in.size(), 0, &used, &msg, &mlen), SL_OK);
            EXPECT_EQ(used, in.size());
        };
        feed(take_output(l.client));  // message 1 in, message 2 out
        const uint8_t *out = nullptr;
        size_t n = 0;
        EXPECT_EQ(sl_session_pending(l.session, &out, &n), SL_OK);
        EXPECT_TRUE(feed_all(l.client, Bytes(out, out + n)).handshake_done);
        EXPECT_EQ(sl_session_consume(l.session, n, 0), SL_OK);
        feed(take_output(l.client));  // the AUTH
        return l;
    };
    std::vector<Login> logins;
    for (int i = 0; i < 2; ++i) logins.push_back(login(i, &Gate::fn, &gate));  // one per checker thread
    gate.wait_entered(2);  // both threads are held in the wake, the queue is empty
    for (int i = 2; i < 2 + 32; ++i) {
        logins.push_back(login(i, &Waker::fn, &unused));
        EXPECT_TRUE(sl_session_busy(logins.back().session)) << "queued: " << i;
    }
    // The queue holds 32 checks: the next login is refused on the spot.
    Login late = login(34, &Waker::fn, &unused);
    EXPECT_FALSE(sl_session_busy(late.session));
    EXPECT_EQ(sl_session_status(late.session), SL_SESSION_CLOSING);
    const uint8_t *out = nullptr;
    size_t n = 0;
    ASSERT_EQ(sl_session_pending(late.session, &out, &n), SL_OK);
    FeedResult r = feed_all(late.client, Bytes(out, out + n));
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(r.msgs[0].type, SL_MSG_CLOSE);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "server busy: try again later");
    sl_session_free(late.session);
    sl_conn_free(late.client);
    EXPECT_TRUE(srv.logs.has("[WARN] 10.0.1.34:1 disconnected: refused: 32 password checks waiting (user bob); "
                             "not checked"));
    for (size_t i = 2; i < logins.size(); ++i) sl_session_free(logins[i].session);  // their checks are skipped
    gate.release();  // (a session whose wake is running cannot be freed until it returns)
    sl_session_free(logins[0].session);
    sl_session_free(logins[1].session);
    for (Login &l : logins) sl_conn_free(l.client);
}
