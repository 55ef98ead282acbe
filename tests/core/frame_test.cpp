// The length-prefix codec: bounds are checked per state before anything is allocated, and
// frames may arrive in any fragmentation.
#include "engine.hpp"
#include "test_util.hpp"

using namespace sltest;
namespace d = seclink::detail;

namespace {

Bytes prefix(uint32_t n) {
    return {static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 8),
            static_cast<uint8_t>(n)};
}

// Feeds `in` to a fresh, started server (which expects handshake frame 1).
int feed_new_server(const Bytes &in, bool eof = false) {
    sl_conn *s = nullptr;
    auto psk = key_of(1);
    EXPECT_EQ(sl_conn_new(&s, SL_SERVER, psk.data()), SL_OK);
    EXPECT_EQ(sl_conn_start(s), SL_OK);
    int rc = feed_all(s, in).rc;
    if (rc == SL_OK && eof) rc = sl_conn_feed_eof(s);
    sl_conn_free(s);
    return rc;
}

}  // namespace

TEST(FrameTest, TruncatedPrefixIsTruncatedAtEof) {
    for (size_t n = 1; n < 4; ++n) {
        Bytes in(n, 0);
        EXPECT_EQ(feed_new_server(in), SL_OK) << "a partial prefix just waits for more";
        EXPECT_EQ(feed_new_server(in, true), SL_ETRUNCATED) << n << " prefix bytes, then EOF";
    }
}

TEST(FrameTest, EofAtFrameBoundaryIsClean) { EXPECT_EQ(feed_new_server({}, true), SL_OK); }

TEST(FrameTest, LengthZeroIsTooShort) { EXPECT_EQ(feed_new_server(prefix(0)), SL_EFRAME_TOO_SHORT); }

TEST(FrameTest, HandshakeBelowMinimumIsTooShort) {
    EXPECT_EQ(feed_new_server(prefix(SL_HANDSHAKE1_BYTES - 1)), SL_EFRAME_TOO_SHORT);
}

TEST(FrameTest, HandshakeAboveLimitIsTooLarge) {
    EXPECT_EQ(feed_new_server(prefix(SL_MAX_HANDSHAKE_BYTES + 1)), SL_EFRAME_TOO_LARGE);
}

TEST(FrameTest, MaximumLengthIsTooLargeInEveryState) {
    EXPECT_EQ(feed_new_server(prefix(0xFFFFFFFFu)), SL_EFRAME_TOO_LARGE);
    Pair p;
    p.handshake();
    EXPECT_EQ(feed_all(p.server, prefix(0xFFFFFFFFu)).rc, SL_EFRAME_TOO_LARGE);
}

TEST(FrameTest, TransportBoundsFollowMaxMessage) {
    for (size_t max : {size_t{0}, size_t{100}, size_t{SL_DEFAULT_MAX_MESSAGE}}) {
        Pair p;
        ASSERT_EQ(sl_conn_set_max_message(p.server, max), SL_OK);
        p.handshake();
        EXPECT_EQ(feed_all(p.server, prefix(static_cast<uint32_t>(max + 30))).rc, SL_EFRAME_TOO_LARGE) << max;
        Pair q;
        ASSERT_EQ(sl_conn_set_max_message(q.server, max), SL_OK);
        q.handshake();
        EXPECT_EQ(feed_all(q.server, prefix(28)).rc, SL_EFRAME_TOO_SHORT);
    }
}

TEST(FrameTest, ShortBodyWaitsThenIsTruncatedAtEof) {
    Bytes in = prefix(SL_HANDSHAKE1_BYTES);
    in.resize(in.size() + 20, 'x');
    EXPECT_EQ(feed_new_server(in), SL_OK);
    EXPECT_EQ(feed_new_server(in, true), SL_ETRUNCATED);
}

// An established pair of engines, the key confirmed (the server then accepts full-size frames).
struct Engines {
    d::Connection client{SL_CLIENT, key_of(3).data()}, server{SL_SERVER, key_of(3).data()};
    Engines() {
        EXPECT_EQ(client.start(), SL_OK);
        EXPECT_EQ(server.start(), SL_OK);
        move(client, server);
        move(server, client);
        move(client, server);  // the key-confirmation PING
        move(server, client);  // its PONG
        EXPECT_TRUE(server.peer_confirmed());
    }
    static void move(d::Connection &from, d::Connection &to) {
        size_t used = 0;
        sl_event ev{};
        EXPECT_EQ(to.feed(from.pending(), from.pending_size(), &used, &ev), SL_OK);
        EXPECT_EQ(used, from.pending_size());
        from.consume(used);
    }
};

TEST(FrameTest, TooLargeLengthIsRefusedOnThePrefixAlone) {
    // The check happens on the 4 prefix bytes alone: no body byte is needed to reject, and
    // nothing is kept for the frame.
    Engines e;
    e.server.trim();
    const size_t before = e.server.buffered_bytes();
    Bytes in = prefix(SL_DEFAULT_MAX_MESSAGE + 30);
    size_t used = 0;
    sl_event ev{};
    EXPECT_EQ(e.server.feed(in.data(), in.size(), &used, &ev), SL_EFRAME_TOO_LARGE);
    EXPECT_EQ(ev.type, SL_EVENT_NONE);
    EXPECT_LE(e.server.buffered_bytes(), before);
}

TEST(FrameTest, AnAnnouncedLengthCostsOnlyTheBytesThatArrived) {
    // A peer that announces the largest frame and sends 10 bytes of it holds 10 bytes (plus
    // slack), not 16 MiB; the memory grows with what arrives.
    for (bool traced : {false, true}) {  // traced: the body is buffered whole; else decrypted as it comes
        Engines e;
        if (traced) e.server.set_trace([](void *, const sl_frame_info *) {}, nullptr);
        e.server.trim();
        Bytes in = prefix(SL_DEFAULT_MAX_MESSAGE + 29);
        in.resize(in.size() + 10, 0);
        size_t used = 0;
        sl_event ev{};
        ASSERT_EQ(e.server.feed(in.data(), in.size(), &used, &ev), SL_OK);
        EXPECT_EQ(used, in.size());
        EXPECT_LT(e.server.buffered_bytes(), 4096u) << (traced ? "traced" : "streamed");
        Bytes more(100000, 0);
        more[1] = 1;  // the IV ends here: counter 1 (the key-confirmation PING had 0)
        ASSERT_EQ(e.server.feed(more.data(), more.size(), &used, &ev), SL_OK);
        EXPECT_LT(e.server.buffered_bytes(), 4 * 100010u) << "geometric growth with what arrived";
        EXPECT_GT(e.server.buffered_bytes(), 100000u - 4096u);
    }
}

TEST(FrameTest, ErrorIsStickyAndLaterCallsReportClosed) {
    Pair p;
    p.handshake();
    EXPECT_EQ(feed_all(p.server, prefix(3)).rc, SL_EFRAME_TOO_SHORT);
    EXPECT_EQ(feed_all(p.server, prefix(100)).rc, SL_ECLOSED);
    EXPECT_TRUE(sl_conn_is_closed(p.server));
    const uint8_t x = 1;
    EXPECT_EQ(sl_conn_send(p.server, SL_MSG_DATA, &x, 1), SL_ECLOSED);
}

TEST(FrameTest, AnyFragmentationGivesTheSameMessages) {
    Pair p;
    p.handshake();
    Bytes wire;
    std::vector<Bytes> sent;
    for (size_t n : {0, 1, 2, 100, 5000, 70000}) {
        Bytes m(n);
        for (size_t i = 0; i < n; ++i) m[i] = static_cast<uint8_t>(i * 7 + n);
        Bytes f = Pair::frame(p.client, SL_MSG_DATA, m);
        wire.insert(wire.end(), f.begin(), f.end());
        sent.push_back(m);
    }
    for (size_t chunk : {size_t{1}, size_t{3}, size_t{4}, size_t{33}, size_t{4096}, size_t{0}}) {
        Pair q;  // a fresh pair per chunking: counters start again
        q.handshake();
        Bytes w;
        for (const Bytes &m : sent) {
            Bytes f = Pair::frame(q.client, SL_MSG_DATA, m);
            w.insert(w.end(), f.begin(), f.end());
        }
        FeedResult r = feed_all(q.server, w, chunk);
        ASSERT_EQ(r.rc, SL_OK) << "chunk " << chunk;
        ASSERT_EQ(r.msgs.size(), sent.size());
        for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(r.msgs[i].content, sent[i]) << "chunk " << chunk;
    }
}

TEST(FrameTest, OneEventPerCallAndConsumedStopsAfterIt) {
    Pair p;
    p.handshake();
    Bytes a = Pair::frame(p.client, SL_MSG_DATA, bytes("first"));
    Bytes b = Pair::frame(p.client, SL_MSG_DATA, bytes("second"));
    Bytes both = a;
    both.insert(both.end(), b.begin(), b.end());
    size_t used = 0;
    sl_event ev{};
    ASSERT_EQ(sl_conn_feed(p.server, both.data(), both.size(), &used, &ev), SL_OK);
    EXPECT_EQ(used, a.size());
    EXPECT_EQ(ev.type, SL_EVENT_MESSAGE);
    EXPECT_EQ(std::string(ev.data, ev.data + ev.len), "first");
    ASSERT_EQ(sl_conn_feed(p.server, both.data() + used, both.size() - used, &used, &ev), SL_OK);
    EXPECT_EQ(used, b.size());
    EXPECT_EQ(std::string(ev.data, ev.data + ev.len), "second");
}
