// The NNpsk0 handshake: success, and each way it must fail (docs/PROTOCOL.md section 3).
#include "engine.hpp"
#include "test_util.hpp"

using namespace sltest;

TEST(HandshakeTest, CompletesAndBothSidesAgreeOnTheHash) {
    Pair p;
    p.start();
    Bytes f1 = take_output(p.client);
    ASSERT_EQ(f1.size(), SL_PREFIX_BYTES + SL_HANDSHAKE1_BYTES);
    EXPECT_EQ(Bytes(f1.begin() + 4, f1.begin() + 9), (Bytes{'S', 'L', 'N', 'K', 1}));
    FeedResult s = feed_all(p.server, f1);
    ASSERT_EQ(s.rc, SL_OK);
    EXPECT_TRUE(s.handshake_done);
    Bytes f2 = take_output(p.server);
    ASSERT_EQ(f2.size(), SL_PREFIX_BYTES + SL_HANDSHAKE2_BYTES);
    EXPECT_FALSE(sl_conn_is_established(p.client));
    FeedResult c = feed_all(p.client, f2);
    ASSERT_EQ(c.rc, SL_OK);
    EXPECT_TRUE(c.handshake_done);
    uint8_t hc[32], hs[32];
    ASSERT_EQ(sl_conn_handshake_hash(p.client, hc), SL_OK);
    ASSERT_EQ(sl_conn_handshake_hash(p.server, hs), SL_OK);
    EXPECT_EQ(hex(hc, 32), hex(hs, 32));
}

TEST(HandshakeTest, FreshEphemeralsGiveDifferentSessions) {
    Pair a, b;
    a.handshake();
    b.handshake();
    uint8_t ha[32], hb[32];
    ASSERT_EQ(sl_conn_handshake_hash(a.client, ha), SL_OK);
    ASSERT_EQ(sl_conn_handshake_hash(b.client, hb), SL_OK);
    EXPECT_NE(hex(ha, 32), hex(hb, 32));
}

TEST(HandshakeTest, WrongPskFailsAtTheServerWithHandshakeAuth) {
    Pair p(key_of(1), key_of(2));
    p.start();
    EXPECT_EQ(feed_all(p.server, take_output(p.client)).rc, SL_EHANDSHAKE_AUTH);
    EXPECT_EQ(sl_conn_pending_size(p.server), 0u) << "a failed server sends nothing";
}

TEST(HandshakeTest, WrongPskInFrame2FailsAtTheClient) {
    Pair good(key_of(1));
    good.start();
    (void)take_output(good.client);
    Pair other(key_of(2));  // a server that holds another key answers its own client
    other.start();
    ASSERT_EQ(feed_all(other.server, take_output(other.client)).rc, SL_OK);
    EXPECT_EQ(feed_all(good.client, take_output(other.server)).rc, SL_EHANDSHAKE_AUTH);
}

TEST(HandshakeTest, WrongMagicIsRejected) {
    Pair p;
    p.start();
    Bytes f1 = take_output(p.client);
    f1[4] = 'X';
    EXPECT_EQ(feed_all(p.server, f1).rc, SL_EBAD_MAGIC);
}

TEST(HandshakeTest, UnknownVersionIsRejected) {
    for (uint8_t v : std::initializer_list<uint8_t>{0, 2, 255}) {
        Pair p;
        p.start();
        Bytes f1 = take_output(p.client);
        f1[8] = v;
        EXPECT_EQ(feed_all(p.server, f1).rc, SL_EBAD_VERSION) << int(v);
    }
}

TEST(HandshakeTest, BitFlipAnywhereInFrame1Fails) {
    Pair ref;
    ref.start();
    const Bytes f1 = take_output(ref.client);
    for (size_t i = 4; i < f1.size(); ++i) {
        Pair p;
        p.start();
        Bytes f = take_output(p.client);
        f[i] ^= 0x01;
        int rc = feed_all(p.server, f).rc;
        int want = i < 8 ? SL_EBAD_MAGIC : i == 8 ? SL_EBAD_VERSION : SL_EHANDSHAKE_AUTH;
        EXPECT_EQ(rc, want) << "byte " << i;
    }
}

TEST(HandshakeTest, BitFlipAnywhereInFrame2Fails) {
    for (size_t i = 4; i < SL_PREFIX_BYTES + SL_HANDSHAKE2_BYTES; ++i) {
        Pair p;
        p.start();
        ASSERT_EQ(feed_all(p.server, take_output(p.client)).rc, SL_OK);
        Bytes f2 = take_output(p.server);
        f2[i] ^= 0x80;
        int rc = feed_all(p.client, f2).rc;
        // A flipped public key may also land on a low-order point; it never succeeds.
        EXPECT_TRUE(rc == SL_EHANDSHAKE_AUTH || rc == SL_EWEAK_KEY) << "byte " << i << " rc " << rc;
    }
}

TEST(HandshakeTest, MessagesBeforeTheHandshakeAreRefused) {
    Pair p;
    const uint8_t x = 1;
    EXPECT_EQ(sl_conn_send(p.client, SL_MSG_DATA, &x, 1), SL_ESTATE);
    p.start();
    EXPECT_EQ(sl_conn_send(p.client, SL_MSG_DATA, &x, 1), SL_ESTATE);
    uint8_t h[32];
    EXPECT_EQ(sl_conn_handshake_hash(p.client, h), SL_ESTATE);
}

TEST(HandshakeTest, SettersOnlyBeforeStart) {
    Pair p;
    p.start();
    EXPECT_EQ(sl_conn_set_max_message(p.client, 10), SL_ESTATE);
    auto k = key_of(3);
    EXPECT_EQ(sl_conn_set_ephemeral_for_testing(p.client, k.data()), SL_ESTATE);
    EXPECT_EQ(sl_conn_start(p.client), SL_ESTATE);
}

TEST(HandshakeTest, FeedBeforeStartIsAStateError) {
    sl_conn *c = nullptr;
    auto k = key_of(1);
    ASSERT_EQ(sl_conn_new(&c, SL_SERVER, k.data()), SL_OK);
    EXPECT_EQ(feed_all(c, Bytes(10, 0)).rc, SL_ESTATE);
    sl_conn_free(c);
}

TEST(HandshakeTest, NonEmptyHandshakePayloadIsAuthenticatedAndIgnored) {
    // PROTOCOL.md 3.3: version 1 ignores payload content (later versions may send some).
    const auto psk = key_of(9);
    seclink::detail::Handshake hs;
    ASSERT_EQ(hs.init(true, seclink::detail::kPrologue, sizeof seclink::detail::kPrologue, psk.data()), SL_OK);
    const Bytes payload = bytes("future extension data");
    uint8_t msg[SL_MAX_HANDSHAKE_BYTES];
    size_t len = 0;
    ASSERT_EQ(hs.write_message(payload.data(), payload.size(), msg, &len), SL_OK);
    Bytes f1 = {0, 0, 0, static_cast<uint8_t>(5 + len), 'S', 'L', 'N', 'K', 1};
    f1.insert(f1.end(), msg, msg + len);
    Pair p(psk);
    p.start();
    FeedResult r = feed_all(p.server, f1);
    EXPECT_EQ(r.rc, SL_OK);
    EXPECT_TRUE(r.handshake_done);
    EXPECT_TRUE(r.msgs.empty());
}

TEST(HandshakeTest, Frame1OverTheHandshakeLimitIsTooLarge) {
    Pair p;
    p.start();
    Bytes f1 = take_output(p.client);
    f1[2] = 0x04;  // length 1024 + 53
    EXPECT_EQ(feed_all(p.server, f1).rc, SL_EFRAME_TOO_LARGE);
}
