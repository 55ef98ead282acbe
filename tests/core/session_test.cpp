// The session layer (sl_policy, sl_session) driven by hand: bytes from a real client engine,
// time from the test. Every server shares this code, so its rules are tested here once.
#include <cstring>
#include <string>
#include <vector>

#include "test_util.hpp"

using namespace sltest;

namespace {

struct Logs {
    std::vector<std::pair<int, std::string>> lines;
    static void fn(void *ud, int level, const char *line) { static_cast<Logs *>(ud)->lines.emplace_back(level, line); }
    bool has(const std::string &text) const {
        for (const auto &[level, line] : lines)
            if (line.find(text) != std::string::npos) return true;
        return false;
    }
    size_t count(const std::string &text) const {
        size_t n = 0;
        for (const auto &[level, line] : lines) n += line.find(text) != std::string::npos;
        return n;
    }
};

const std::array<uint8_t, 32> kKey = key_of(9);

struct Server {
    Logs logs;
    sl_server_config cfg{};
    sl_policy *p = nullptr;
    explicit Server(void (*tune)(sl_server_config &) = nullptr) {
        sl_server_config_init(&cfg);
        cfg.psk = kKey.data();
        cfg.log = &Logs::fn;
        cfg.log_ud = &logs;
        if (tune != nullptr) tune(cfg);
        EXPECT_EQ(sl_policy_new(&p, &cfg), SL_OK);
    }
    ~Server() { sl_policy_free(p); }
};

struct Session {
    sl_session *s = nullptr;
    Session(Server &srv, const char *peer, int64_t now) { EXPECT_EQ(sl_session_new(&s, srv.p, peer, now), SL_OK); }
    ~Session() { sl_session_free(s); }
    // Feeds everything; DATA handed out is answered with `answer` (if the config has a handler).
    std::vector<Bytes> feed(const Bytes &in, int64_t now, const std::string &answer = "") {
        std::vector<Bytes> got;
        size_t off = 0;
        while (off < in.size() && sl_session_status(s) == SL_SESSION_OPEN) {
            size_t used = 0, mlen = 0;
            const uint8_t *msg = nullptr;
            EXPECT_EQ(sl_session_feed(s, in.data() + off, in.size() - off, now, &used, &msg, &mlen), SL_OK);
            off += used;
            if (msg != nullptr) {
                got.emplace_back(msg, msg + mlen);
                EXPECT_EQ(sl_session_reply(s, reinterpret_cast<const uint8_t *>(answer.data()), answer.size(), now),
                          SL_OK);
            }
        }
        return got;
    }
    Bytes output(int64_t now = 0) {
        const uint8_t *p = nullptr;
        size_t n = 0;
        EXPECT_EQ(sl_session_pending(s, &p, &n), SL_OK);
        Bytes out(p, p + n);
        EXPECT_EQ(sl_session_consume(s, n, now), SL_OK);
        return out;
    }
    int status() const { return sl_session_status(s); }
};

struct Client {
    sl_conn *c = nullptr;
    explicit Client(const std::array<uint8_t, 32> &psk = kKey) {
        EXPECT_EQ(sl_conn_new(&c, SL_CLIENT, psk.data()), SL_OK);
        EXPECT_EQ(sl_conn_start(c), SL_OK);
    }
    ~Client() { sl_conn_free(c); }
    Bytes out() { return take_output(c); }
    FeedResult in(const Bytes &b) { return feed_all(c, b); }
    Bytes frame(int type, const std::string &text) {
        EXPECT_EQ(sl_conn_send(c, type, reinterpret_cast<const uint8_t *>(text.data()), text.size()), SL_OK);
        return out();
    }
};

// A client that completes the handshake and the key confirmation with session `s`.
void connect(Client &cl, Session &s, int64_t now) {
    s.feed(cl.out(), now);
    ASSERT_TRUE(cl.in(s.output(now)).handshake_done);
    s.feed(cl.out(), now);  // the key-confirmation PING
    ASSERT_EQ(cl.in(s.output(now)).rc, SL_OK);
}

Bytes prefix(uint32_t n) { return {uint8_t(n >> 24), uint8_t(n >> 16), uint8_t(n >> 8), uint8_t(n)}; }

}  // namespace

TEST(SessionTest, AuthenticatedAndLoggedOnlyOnceTheKeyIsConfirmed) {
    Server srv;
    Session s(srv, "10.0.0.1:4000", 0);
    Client cl;
    EXPECT_TRUE(srv.logs.has("[INFO] 10.0.0.1:4000 connected"));
    s.feed(cl.out(), 1);
    ASSERT_TRUE(cl.in(s.output()).handshake_done);
    EXPECT_FALSE(srv.logs.has("handshake complete")) << "frame 1 can be replayed by anyone";
    EXPECT_EQ(sl_policy_sessions(srv.p), 0u);
    EXPECT_EQ(sl_policy_handshakes(srv.p), 1u);
    s.feed(cl.out(), 2);  // the PING
    EXPECT_TRUE(srv.logs.has("[INFO] 10.0.0.1:4000 handshake complete"));
    EXPECT_EQ(sl_policy_sessions(srv.p), 1u);
    EXPECT_EQ(sl_policy_handshakes(srv.p), 0u);
    EXPECT_FALSE(srv.logs.has("PING")) << "the key-confirmation PING is part of the handshake";
    EXPECT_EQ(cl.in(s.output()).msgs.size(), 0u);  // its PONG, swallowed
    s.feed(cl.frame(SL_MSG_DATA, "hi"), 3);
    FeedResult r = cl.in(s.output());
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "ACK: received 2 bytes");
    EXPECT_TRUE(srv.logs.has("[RECV] 10.0.0.1:4000 #1 hi (2 bytes)"));
    EXPECT_TRUE(srv.logs.has("[SEND] 10.0.0.1:4000 #1 ACK: received 2 bytes (a reply of 21 bytes)"));
    s.feed(cl.frame(SL_MSG_CLOSE, "bye"), 4);
    EXPECT_EQ(s.status(), SL_SESSION_CLOSING);
    sl_session_close(s.s);
    EXPECT_TRUE(srv.logs.has("[INFO] 10.0.0.1:4000 disconnected: client closed the session (bye)"));
    EXPECT_EQ(sl_policy_sessions(srv.p), 0u);
    EXPECT_EQ(sl_policy_connections(srv.p), 0u);
}

TEST(SessionTest, ReplayedFrame1HoldsAFewBytesAndOnlyUntilTheHandshakeTimeout) {
    Server srv;
    Client real;
    const Bytes frame1 = real.out();  // recorded from a real client
    Session s(srv, "10.0.0.2:1", 0);
    s.feed(frame1, 0);
    EXPECT_FALSE(s.output().empty());  // frame 2, as to anyone
    EXPECT_EQ(sl_session_deadline(s.s), 10000);
    // Without the key the peer cannot confirm; it may not announce a large frame either.
    s.feed(prefix(1025), 1);
    EXPECT_EQ(s.status(), SL_SESSION_CLOSED);
    sl_session_close(s.s);
    EXPECT_TRUE(srv.logs.has("disconnected: protocol error: FRAME_TOO_LARGE"));
    EXPECT_FALSE(srv.logs.has("handshake complete"));

    Session idle(srv, "10.0.0.2:2", 0);
    idle.feed(frame1, 0);
    idle.output();
    sl_session_tick(idle.s, 9999);
    EXPECT_EQ(idle.status(), SL_SESSION_OPEN);
    sl_session_tick(idle.s, 10000);
    EXPECT_EQ(idle.status(), SL_SESSION_CLOSED);
    sl_session_close(idle.s);
    EXPECT_TRUE(srv.logs.has("[WARN] 10.0.0.2:2 disconnected: handshake timed out after 10 s"));
    EXPECT_EQ(sl_policy_memory(srv.p), 0u);
}

TEST(SessionTest, HandshakeSlotsAreLimitedAndALateClientWaitsThenIsServed) {
    Server srv([](sl_server_config &c) { c.max_handshakes = 2; });
    Session a(srv, "10.0.1.1:1", 0), b(srv, "10.0.1.2:1", 0), c(srv, "10.0.1.3:1", 0);
    EXPECT_TRUE(sl_session_wants_read(a.s) && sl_session_wants_read(b.s));
    EXPECT_FALSE(sl_session_wants_read(c.s)) << "every handshake slot is taken";
    EXPECT_EQ(sl_session_deadline(c.s), 10) << "it asks again shortly";
    sl_session_tick(c.s, 10);
    EXPECT_FALSE(sl_session_wants_read(c.s));
    Session d(srv, "10.0.1.4:1", 15);
    EXPECT_FALSE(sl_session_wants_read(d.s)) << "a newcomer does not overtake one already waiting";
    sl_session_close(a.s);  // a peer without the key gives its slot up
    sl_session_tick(c.s, 20);
    ASSERT_TRUE(sl_session_wants_read(c.s));
    Client cl;
    connect(cl, c, 21);
    EXPECT_TRUE(srv.logs.has("[INFO] 10.0.1.3:1 handshake complete"));
}

TEST(SessionTest, AClientThatFindsNoHandshakeSlotWithinTheTimeoutIsRefused) {
    Server srv([](sl_server_config &c) { c.max_handshakes = 1; });
    Session a(srv, "10.0.1.1:1", 0), b(srv, "10.0.1.2:1", 0);
    sl_session_tick(b.s, 19999);  // twice the handshake timeout: every slot holder had its chance
    EXPECT_EQ(b.status(), SL_SESSION_OPEN);
    sl_session_tick(b.s, 20000);
    EXPECT_EQ(b.status(), SL_SESSION_CLOSED);
    sl_session_close(b.s);
    EXPECT_TRUE(srv.logs.has("[WARN] 10.0.1.2:1 disconnected: refused: no handshake slot free within 20 s"));
}

TEST(SessionTest, OneAddressGetsAtMostItsShareOfHandshakeSlots) {
    Server srv([](sl_server_config &c) { c.max_handshakes_per_addr = 2; });
    Session a(srv, "[2001:db8::1]:1", 0), b(srv, "[2001:db8::1]:2", 0), c(srv, "[2001:db8::1]:3", 0);
    Session other(srv, "192.0.2.7:1", 0);
    EXPECT_TRUE(sl_session_wants_read(a.s) && sl_session_wants_read(b.s));
    EXPECT_FALSE(sl_session_wants_read(c.s));
    EXPECT_TRUE(sl_session_wants_read(other.s)) << "another address is not held back";
}

TEST(SessionTest, NewSessionsFromOneAddressAreRateLimited) {
    Server srv([](sl_server_config &c) { c.handshake_rate = 2; });
    std::vector<std::unique_ptr<Session>> s;
    for (int i = 0; i < 3; ++i) {
        s.push_back(std::make_unique<Session>(srv, "10.0.2.1:1", 0));
        sl_session_close(s.back()->s);  // done at once: only the rate holds the third back
    }
    Session third(srv, "10.0.2.1:9", 0);
    EXPECT_FALSE(sl_session_wants_read(third.s)) << "a burst of 2 a second is used up";
    EXPECT_EQ(sl_session_deadline(third.s), 500) << "one more is allowed after 1/2 s";
    sl_session_tick(third.s, 500);
    EXPECT_TRUE(sl_session_wants_read(third.s));
}

TEST(SessionTest, OverMaxClientsTheConfirmedClientIsToldTheServerIsFull) {
    Server srv([](sl_server_config &c) { c.max_clients = 1; });
    Session a(srv, "10.0.3.1:1", 0), b(srv, "10.0.3.2:1", 0);
    Client ca, cb;
    connect(ca, a, 1);
    b.feed(cb.out(), 1);
    ASSERT_TRUE(cb.in(b.output()).handshake_done);
    b.feed(cb.out(), 2);
    EXPECT_EQ(b.status(), SL_SESSION_CLOSING);
    FeedResult r = cb.in(b.output());
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(r.msgs[0].type, SL_MSG_CLOSE);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "server full: try again later");
    sl_session_close(b.s);
    EXPECT_TRUE(srv.logs.has("[WARN] 10.0.3.2:1 disconnected: refused: server full (1 clients)"));
    EXPECT_EQ(sl_policy_sessions(srv.p), 1u);
}

TEST(SessionTest, AFrameThatCannotFitTheMemoryBudgetIsRefusedAndNothingIsKept) {
    Server srv([](sl_server_config &c) { c.max_memory = 1u << 20; });
    Session s(srv, "10.0.4.1:1", 0);
    Client cl;
    connect(cl, s, 0);
    const size_t before = sl_policy_memory(srv.p);
    s.feed(prefix(512 * 1024), 1);  // half the budget: fits, charged in full at once
    EXPECT_EQ(s.status(), SL_SESSION_OPEN);
    EXPECT_GE(sl_policy_memory(srv.p), before + 512 * 1024);
    Session t(srv, "10.0.4.2:1", 0);
    Client ct;
    connect(ct, t, 0);
    t.feed(prefix(600 * 1024), 1);  // no longer fits
    EXPECT_EQ(t.status(), SL_SESSION_CLOSED);
    sl_session_close(t.s);
    EXPECT_TRUE(srv.logs.has("[WARN] 10.0.4.2:1 disconnected: frame of 614400 bytes refused: the memory budget (1 MiB)"));
    sl_session_close(s.s);
    EXPECT_EQ(sl_policy_memory(srv.p), 0u) << "everything charged is given back";
}

TEST(SessionTest, AStartedFrameMustBeFinishedWithinTheFrameTimeoutWhateverTrickles) {
    Server srv([](sl_server_config &c) { c.frame_timeout_ms = 5000; });
    Session s(srv, "10.0.5.1:1", 0);
    Client cl;
    connect(cl, s, 0);
    Bytes big = cl.frame(SL_MSG_DATA, std::string(100000, 'x'));
    s.feed(Bytes(big.begin(), big.begin() + 1000), 100);
    for (int64_t t = 1000; t < 5100; t += 1000) {  // a byte now and then keeps the idle timer away
        s.feed(Bytes(big.begin() + 1000 + t / 1000, big.begin() + 1001 + t / 1000), t);
        sl_session_tick(s.s, t);
    }
    sl_session_tick(s.s, 5100);
    EXPECT_EQ(s.status(), SL_SESSION_CLOSING);
    sl_session_close(s.s);
    EXPECT_TRUE(srv.logs.has("[WARN] 10.0.5.1:1 disconnected: frame not completed within 5 s"));
}

TEST(SessionTest, AQuietSessionGivesItsBuffersBackAndIdleOnesAreClosed) {
    Server srv([](sl_server_config &c) { c.idle_timeout_ms = 60000; });
    Session s(srv, "10.0.6.1:1", 0);
    Client cl;
    connect(cl, s, 0);
    Bytes big = cl.frame(SL_MSG_DATA, std::string(300000, 'y'));
    for (size_t off = 0; off < big.size(); off += 65536)  // in pieces, as reads deliver it
        s.feed(Bytes(big.begin() + off, big.begin() + std::min(big.size(), off + 65536)), 10);
    ASSERT_EQ(cl.in(s.output()).msgs.size(), 1u);  // the ACK
    EXPECT_GE(sl_policy_memory(srv.p), 300000u);
    sl_session_tick(s.s, 1010);  // quiet for a second
    EXPECT_LT(sl_policy_memory(srv.p), 4096u) << "a quiet session keeps no message-sized buffers";
    sl_session_tick(s.s, 60010);
    EXPECT_EQ(s.status(), SL_SESSION_CLOSING);
    FeedResult r = cl.in(s.output());
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(r.msgs[0].type, SL_MSG_CLOSE);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "idle timeout");
    sl_session_close(s.s);
    EXPECT_TRUE(srv.logs.has("[INFO] 10.0.6.1:1 disconnected: idle for 60 s"));
}

TEST(SessionTest, WithAHandlerMessagesAreHandedOutAndAnsweredInOrder) {
    Server srv([](sl_server_config &c) {
        c.handler = [](void *, const char *, const uint8_t *, size_t, sl_buf *) { return 0; };
    });
    Session s(srv, "10.0.7.1:1", 0);
    Client cl;
    connect(cl, s, 0);
    Bytes two = cl.frame(SL_MSG_DATA, "one");
    Bytes more = cl.frame(SL_MSG_DATA, "two");
    two.insert(two.end(), more.begin(), more.end());
    size_t used = 0, mlen = 0;
    const uint8_t *msg = nullptr;
    ASSERT_EQ(sl_session_feed(s.s, two.data(), two.size(), 1, &used, &msg, &mlen), SL_OK);
    ASSERT_NE(msg, nullptr);
    EXPECT_EQ(std::string(reinterpret_cast<const char *>(msg), mlen), "one");
    EXPECT_LT(used, two.size()) << "it stops at the message";
    EXPECT_FALSE(sl_session_wants_read(s.s));
    size_t u2 = 0;
    EXPECT_EQ(sl_session_feed(s.s, two.data() + used, two.size() - used, 1, &u2, &msg, &mlen), SL_ESTATE);
    EXPECT_EQ(sl_session_reply(s.s, reinterpret_cast<const uint8_t *>("r1"), 2, 1), SL_OK);
    EXPECT_EQ(sl_session_reply(s.s, reinterpret_cast<const uint8_t *>("r1"), 2, 1), SL_ESTATE);
    std::vector<Bytes> rest = s.feed(Bytes(two.begin() + static_cast<std::ptrdiff_t>(used), two.end()), 2, "r2");
    ASSERT_EQ(rest.size(), 1u);
    FeedResult r = cl.in(s.output());
    ASSERT_EQ(r.msgs.size(), 2u);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "r1");
    EXPECT_EQ(std::string(r.msgs[1].content.begin(), r.msgs[1].content.end()), "r2");
    s.feed(cl.frame(SL_MSG_DATA, "three"), 3);  // answered by a failure
    EXPECT_EQ(s.status(), SL_SESSION_OPEN);
}

TEST(SessionTest, AFailingHandlerClosesOnlyThatSessionWithServerError) {
    Server srv([](sl_server_config &c) {
        c.handler = [](void *, const char *, const uint8_t *, size_t, sl_buf *) { return 0; };
    });
    Session s(srv, "10.0.7.2:1", 0);
    Client cl;
    connect(cl, s, 0);
    Bytes f = cl.frame(SL_MSG_DATA, "boom");
    size_t used = 0, mlen = 0;
    const uint8_t *msg = nullptr;
    ASSERT_EQ(sl_session_feed(s.s, f.data(), f.size(), 1, &used, &msg, &mlen), SL_OK);
    ASSERT_EQ(sl_session_reply_failed(s.s, "ValueError: boom", 1), SL_OK);
    EXPECT_EQ(s.status(), SL_SESSION_CLOSING);
    FeedResult r = cl.in(s.output());
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "server error");
    sl_session_close(s.s);
    EXPECT_TRUE(srv.logs.has("[WARN] 10.0.7.2:1 disconnected: the message handler failed: ValueError: boom"));
}

TEST(SessionTest, TlsMismatchesAreNamedBothWays) {
    Server tls([](sl_server_config &c) { c.tls = 1; });
    Session plain(tls, "10.0.8.1:1", 0);
    Client cl;
    const Bytes frame1 = cl.out();
    EXPECT_EQ(sl_session_tls_check(plain.s, frame1.data(), frame1.size(), 0), 1);
    EXPECT_EQ(plain.status(), SL_SESSION_CLOSING);
    EXPECT_EQ(hex(plain.output()), "15030300020246") << "a fatal TLS alert, raw";
    sl_session_close(plain.s);
    EXPECT_TRUE(tls.logs.has("client is not using TLS (plain seclink/1?) but this server requires TLS"));

    Server srv;
    Session hello(srv, "10.0.8.2:1", 0);
    hello.feed({0x16, 0x03, 0x01, 0x00, 0x10}, 0);
    EXPECT_EQ(hello.status(), SL_SESSION_CLOSED);
    sl_session_close(hello.s);
    EXPECT_TRUE(srv.logs.has("client is speaking TLS but this server does not use TLS"));
}

TEST(SessionTest, ShutdownSaysGoodbyeToAuthenticatedSessionsAndDropsTheOthers) {
    Server srv;
    Session a(srv, "10.0.9.1:1", 0), b(srv, "10.0.9.2:1", 0);
    Client ca;
    connect(ca, a, 0);
    sl_session_shutdown(a.s, 5);
    sl_session_shutdown(b.s, 5);
    EXPECT_EQ(a.status(), SL_SESSION_CLOSING);
    EXPECT_EQ(b.status(), SL_SESSION_CLOSED);
    FeedResult r = ca.in(a.output(5));
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "server shutting down");
    sl_session_tick(a.s, 5 + 1999);
    EXPECT_EQ(a.status(), SL_SESSION_CLOSING);
    sl_session_tick(a.s, 5 + 2000);  // the lingering close is over: dropped, reason kept
    EXPECT_EQ(a.status(), SL_SESSION_CLOSED);
    sl_session_close(a.s);
    sl_session_close(b.s);
    EXPECT_EQ(srv.logs.count("disconnected: server shutting down"), 2u);
}

TEST(SessionTest, RedactedLogsShowSizesAndCountersButNoContent) {
    Server srv([](sl_server_config &c) { c.redact = 1; });
    Session s(srv, "10.0.10.1:1", 0);
    Client cl;
    connect(cl, s, 0);
    s.feed(cl.frame(SL_MSG_DATA, "the secret"), 1);
    s.feed(cl.frame(SL_MSG_CLOSE, "secret reason"), 2);
    sl_session_close(s.s);
    EXPECT_TRUE(srv.logs.has("[RECV] 10.0.10.1:1 #1 <redacted> (10 bytes)"));
    EXPECT_TRUE(srv.logs.has("[SEND] 10.0.10.1:1 #1 <redacted> (a reply of 22 bytes)"));
    EXPECT_FALSE(srv.logs.has("secret"));
}

TEST(SessionTest, ABadFrameAfterGoodOnesStillSendsTheirRepliesFirst) {
    Server srv;
    Session s(srv, "10.0.11.1:1", 0);
    Client cl;
    connect(cl, s, 0);
    Bytes in = cl.frame(SL_MSG_DATA, "ok");
    Bytes bad = cl.frame(SL_MSG_DATA, "tampered");
    bad.back() ^= 1;
    in.insert(in.end(), bad.begin(), bad.end());
    s.feed(in, 1);
    EXPECT_EQ(s.status(), SL_SESSION_CLOSING);
    FeedResult r = cl.in(s.output());
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "ACK: received 2 bytes");
    sl_session_close(s.s);
    EXPECT_TRUE(srv.logs.has("[WARN] 10.0.11.1:1 disconnected: protocol error: AUTH"));
}

TEST(SessionTest, AClientThatDoesNotReadItsRepliesIsNotReadFromPastOneMiB) {
    Server srv([](sl_server_config &c) { c.echo = 1; });
    Session s(srv, "10.0.12.1:1", 0);
    Client cl;
    connect(cl, s, 0);
    const std::string big(600 * 1024, 'e');
    s.feed(cl.frame(SL_MSG_DATA, big), 1);  // its echo, not read by the client
    EXPECT_TRUE(sl_session_wants_read(s.s)) << "600 KiB queued is under the high-water mark";
    s.feed(cl.frame(SL_MSG_DATA, big), 2);
    const uint8_t *p = nullptr;
    size_t queued = 0;
    ASSERT_EQ(sl_session_pending(s.s, &p, &queued), SL_OK);
    ASSERT_GT(queued, size_t{1} << 20);
    EXPECT_FALSE(sl_session_wants_read(s.s)) << "over 1 MiB of replies queued: the server stops reading";
    EXPECT_EQ(s.status(), SL_SESSION_OPEN);
    ASSERT_EQ(sl_session_consume(s.s, queued - 1000, 3), SL_OK);  // the client reads most of it
    EXPECT_TRUE(sl_session_wants_read(s.s));
}

// ------------------------------------------------------------------------------ chat rooms

namespace {

struct Woken {
    int n = 0;
    static void fn(void *ud) { ++static_cast<Woken *>(ud)->n; }
};

// The chat lines (DATA contents) a client receives from what its session has pending.
std::vector<std::string> lines_of(Client &cl, Session &s, int64_t now = 0) {
    std::vector<std::string> out;
    for (const auto &m : cl.in(s.output(now)).msgs)
        if (m.type == SL_MSG_DATA) out.emplace_back(m.content.begin(), m.content.end());
    return out;
}

void chat_tune(sl_server_config &c) {
    c.chat = 1;
    c.chat_rate = 2;
    c.chat_queue = 3;
}

}  // namespace

TEST(ChatTest, EveryMemberGetsEachLineOnceInOrderAndNothingAfterLeaving) {
    Server srv(chat_tune);
    Session a(srv, "10.1.0.1:1", 0), b(srv, "10.1.0.2:1", 0);
    Woken wa, wb;
    sl_session_set_wake(a.s, &Woken::fn, &wa);
    sl_session_set_wake(b.s, &Woken::fn, &wb);
    Client ca, cb;
    connect(ca, a, 0);
    connect(cb, b, 0);
    EXPECT_EQ(wa.n, 1) << "b's join was queued for a: a's driver is woken";
    EXPECT_EQ(wb.n, 0) << "b's own lines go out with its own feed";
    sl_session_pump(a.s, 0);  // (connect() took each one's own welcome lines)
    EXPECT_EQ(lines_of(ca, a), std::vector<std::string>{"* guest2 joined lobby"});
    a.feed(ca.frame(SL_MSG_DATA, "one"), 1);
    b.feed(cb.frame(SL_MSG_DATA, "/join dev"), 1);
    a.feed(ca.frame(SL_MSG_DATA, "two"), 1);
    sl_session_pump(b.s, 1);
    EXPECT_EQ(lines_of(cb, b), (std::vector<std::string>{"[guest1] one", "* guest2 joined dev"}))
        << "\"two\" was said after b left";
    EXPECT_EQ(lines_of(ca, a), (std::vector<std::string>{"[guest1] one", "* guest2 left lobby", "[guest1] two"}));
    EXPECT_TRUE(srv.logs.has("[RECV] 10.1.0.1:1 #1 guest1@lobby one (3 bytes)"));
}

TEST(ChatTest, RateIsATokenBucketPerMember) {
    Server srv(chat_tune);  // 2 lines a second
    Session a(srv, "10.1.0.3:1", 0);
    Client ca;
    connect(ca, a, 0);
    lines_of(ca, a);
    Bytes three = ca.frame(SL_MSG_DATA, "1");
    for (const char *t : {"2", "3"}) {
        Bytes f = ca.frame(SL_MSG_DATA, t);
        three.insert(three.end(), f.begin(), f.end());
    }
    a.feed(three, 100);
    const auto got = lines_of(ca, a);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0], "[guest1] 1");
    EXPECT_EQ(got[1], "[guest1] 2");
    EXPECT_EQ(got[2].rfind("! CHAT_RATE: ", 0), 0u) << got[2];
    a.feed(ca.frame(SL_MSG_DATA, "4"), 599);  // 499 ms: not yet one token back
    EXPECT_EQ(lines_of(ca, a)[0].rfind("! CHAT_RATE: ", 0), 0u);
    a.feed(ca.frame(SL_MSG_DATA, "5"), 1100);
    EXPECT_EQ(lines_of(ca, a), std::vector<std::string>{"[guest1] 5"});
}

TEST(ChatTest, AMemberThatDoesNotReadIsClosedAndItsQueueFreed) {
    Server srv(chat_tune);  // at most 3 lines waiting
    Session a(srv, "10.1.0.4:1", 0), slow(srv, "10.1.0.5:1", 0);
    Woken wa, ws;
    sl_session_set_wake(a.s, &Woken::fn, &wa);
    sl_session_set_wake(slow.s, &Woken::fn, &ws);
    Client ca, cs;
    connect(ca, a, 0);
    connect(cs, slow, 0);
    for (int i = 0; i < 4; ++i) a.feed(ca.frame(SL_MSG_DATA, "line " + std::to_string(i)), 1000 * i);
    EXPECT_EQ(ws.n, 1) << "woken once until its driver pumps";
    EXPECT_EQ(slow.status(), SL_SESSION_OPEN);
    EXPECT_GT(sl_policy_memory(srv.p), 0u);
    sl_session_pump(slow.s, 4000);  // its driver gets to it: the 4th line overflowed its queue
    EXPECT_EQ(slow.status(), SL_SESSION_CLOSING);
    FeedResult r = cs.in(slow.output());
    std::vector<std::string> data;
    std::string close_reason;
    for (const auto &m : r.msgs) {
        if (m.type == SL_MSG_DATA) data.emplace_back(m.content.begin(), m.content.end());
        if (m.type == SL_MSG_CLOSE) close_reason.assign(m.content.begin(), m.content.end());
    }
    EXPECT_EQ(close_reason, "CHAT_SLOW: more than 3 lines were waiting for you");
    EXPECT_EQ(data, std::vector<std::string>{}) << "its queue was emptied, not delivered";
    sl_session_pump(a.s, 4000);
    EXPECT_EQ(lines_of(ca, a).back(), "* guest2 left lobby (too slow)");
    sl_session_close(slow.s);
    EXPECT_TRUE(srv.logs.has("[WARN] 10.1.0.5:1 disconnected: chat: too slow (more than 3 lines waiting, 4 dropped)"));
    sl_session_close(a.s);
    EXPECT_EQ(sl_policy_memory(srv.p), 0u);
}

TEST(ChatTest, TextRules) {
    auto ok = [](const std::string &s) { return sl_chat_text_ok(reinterpret_cast<const uint8_t *>(s.data()), s.size()); };
    EXPECT_TRUE(ok("plain text"));
    EXPECT_TRUE(ok("caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80"));  // 2, 3 and 4 bytes
    EXPECT_FALSE(ok("bell\x07"));
    EXPECT_FALSE(ok("tab\t"));
    EXPECT_FALSE(ok("del\x7f"));
    EXPECT_FALSE(ok("c1 \xc2\x85"));                     // U+0085
    EXPECT_FALSE(ok("\xe2\x80\xaeoverride"));            // U+202E
    EXPECT_FALSE(ok("\xe2\x81\xa6isolate"));             // U+2066
    EXPECT_FALSE(ok("\xd8\x9c"));                        // U+061C
    EXPECT_FALSE(ok("\xe2\x80\xa8"));                    // U+2028
    EXPECT_FALSE(ok("\xc0\xaf"));                        // overlong '/'
    EXPECT_FALSE(ok("\xe0\x80\xaf"));                    // overlong
    EXPECT_FALSE(ok("\xed\xa0\x80"));                    // a surrogate
    EXPECT_FALSE(ok("\xf4\x90\x80\x80"));                // above U+10FFFF
    EXPECT_FALSE(ok("\xe2\x98"));                        // cut short
}

// PROTOCOL.md 5, closing the stream: once the CLOSE is written the session lingers, reading and
// discarding what the client still sends until its EOF, a byte bound or a deadline, so that the
// close is not a reset that destroys the CLOSE the client has not read yet.
TEST(SessionTest, AClosingSessionLingersUntilTheClientsEofAByteBoundOrADeadline) {
    Server srv([](sl_server_config &c) { c.max_clients = 1; });
    Session a(srv, "10.0.9.1:1", 0);
    Client ca;
    connect(ca, a, 0);
    auto refused = [&](Session &s, Client &cl, int64_t now) {  // server full: CLOSE, then lingering
        s.feed(cl.out(), now);
        ASSERT_TRUE(cl.in(s.output(now)).handshake_done);
        Bytes pipelined = cl.out();  // the key-confirmation PING and a DATA, sent together
        Bytes data = cl.frame(SL_MSG_DATA, "pipelined");
        pipelined.insert(pipelined.end(), data.begin(), data.end());
        s.feed(pipelined, now);
        ASSERT_EQ(s.status(), SL_SESSION_CLOSING);
        EXPECT_FALSE(sl_session_wants_read(s.s)) << "the CLOSE is written first";
        ASSERT_EQ(cl.in(s.output(now)).msgs.at(0).type, SL_MSG_CLOSE);
        EXPECT_TRUE(sl_session_wants_read(s.s)) << "then what the client still sends is read";
        EXPECT_EQ(sl_session_deadline(s.s), now + 2000);
    };
    Session eof(srv, "10.0.9.2:1", 0);
    Client ce;
    refused(eof, ce, 10);
    size_t used = 0, mlen = 0;
    const uint8_t *msg = nullptr;
    const Bytes junk(1000, 0x55);
    ASSERT_EQ(sl_session_feed(eof.s, junk.data(), junk.size(), 11, &used, &msg, &mlen), SL_OK);
    EXPECT_EQ(used, junk.size());
    EXPECT_EQ(msg, nullptr);
    EXPECT_EQ(eof.status(), SL_SESSION_CLOSING) << "discarded, not a protocol error";
    sl_session_feed_eof(eof.s, 12);
    EXPECT_EQ(eof.status(), SL_SESSION_CLOSED);
    sl_session_close(eof.s);
    EXPECT_TRUE(srv.logs.has("[WARN] 10.0.9.2:1 disconnected: refused: server full (1 clients)"));

    Session flood(srv, "10.0.9.3:1", 0);
    Client cf;
    refused(flood, cf, 20);
    const Bytes chunk(64 * 1024, 0x55);
    for (int i = 0; i < 4; ++i) {  // 256 KiB: the bound, still read
        ASSERT_EQ(sl_session_feed(flood.s, chunk.data(), chunk.size(), 21, &used, &msg, &mlen), SL_OK);
        EXPECT_EQ(flood.status(), SL_SESSION_CLOSING);
    }
    ASSERT_EQ(sl_session_feed(flood.s, chunk.data(), 1, 21, &used, &msg, &mlen), SL_OK);
    EXPECT_EQ(flood.status(), SL_SESSION_CLOSED) << "one byte more: closed";

    Session silent(srv, "10.0.9.4:1", 0);
    Client cs;
    refused(silent, cs, 30);
    sl_session_tick(silent.s, 2029);
    EXPECT_EQ(silent.status(), SL_SESSION_CLOSING);
    sl_session_tick(silent.s, 2030);
    EXPECT_EQ(silent.status(), SL_SESSION_CLOSED) << "no EOF within 2 s: closed anyway";
    sl_session_close(silent.s);
    EXPECT_EQ(srv.logs.count("disconnected: refused: server full (1 clients)"), 2u);
}
