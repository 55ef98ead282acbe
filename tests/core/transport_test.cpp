// Transport frames and messages (docs/PROTOCOL.md sections 4 and 5).
#include <sys/mman.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>

#include "engine.hpp"
#include "noise.hpp"
#include "test_util.hpp"

using namespace sltest;
namespace d = seclink::detail;

namespace {

// A hand-driven client built from the Noise layer, so tests can send frames the engine would
// never produce: unknown types, oversized PINGs, chosen counters.
class RawClient {
public:
    explicit RawClient(sl_conn *server, const std::array<uint8_t, 32> &psk = key_of(7)) : server_(server) {
        d::Handshake hs;
        EXPECT_EQ(hs.init(true, d::kPrologue, sizeof d::kPrologue, psk.data()), SL_OK);
        uint8_t msg[64];
        size_t len = 0;
        EXPECT_EQ(hs.write_message(nullptr, 0, msg, &len), SL_OK);
        Bytes f1 = {0, 0, 0, static_cast<uint8_t>(5 + len), 'S', 'L', 'N', 'K', 1};
        f1.insert(f1.end(), msg, msg + len);
        EXPECT_TRUE(feed_all(server, f1).handshake_done);
        Bytes f2 = take_output(server);
        uint8_t payload[64];
        EXPECT_EQ(hs.read_message(f2.data() + 4, f2.size() - 4, payload, &len), SL_OK);
        uint8_t k1[32], k2[32], h[32];
        EXPECT_EQ(hs.split(k1, k2, h), SL_OK);
        EXPECT_EQ(aead_.init(k1, true), SL_OK);
    }
    // The frame carrying `plaintext` (type byte included) under counter n.
    Bytes frame(uint64_t n, const Bytes &plaintext) {
        Bytes f(4 + 12 + plaintext.size() + 16);
        const uint32_t body = static_cast<uint32_t>(f.size() - 4);
        f[0] = static_cast<uint8_t>(body >> 24);
        f[1] = static_cast<uint8_t>(body >> 16);
        f[2] = static_cast<uint8_t>(body >> 8);
        f[3] = static_cast<uint8_t>(body);
        d::make_nonce(n, f.data() + 4);
        EXPECT_EQ(aead_.seal(f.data() + 4, nullptr, 0, plaintext.data(), plaintext.size(), nullptr, 0,
                             f.data() + 16, f.data() + 16 + plaintext.size()),
                  SL_OK);
        return f;
    }
    int deliver(uint64_t n, const Bytes &plaintext) { return feed_all(server_, frame(n, plaintext)).rc; }

private:
    sl_conn *server_;
    d::Aead aead_;
};

Bytes pattern(size_t n) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>((i * 131) ^ (i >> 8));
    return b;
}

}  // namespace

TEST(TransportTest, DataRoundTripsInBothDirections) {
    Pair p;
    p.handshake();
    for (size_t n : {size_t{0}, size_t{1}, size_t{64}, size_t{65536}, size_t{1} << 20}) {
        Bytes m = pattern(n);
        FeedResult s = feed_all(p.server, Pair::frame(p.client, SL_MSG_DATA, m));
        ASSERT_EQ(s.rc, SL_OK);
        ASSERT_EQ(s.msgs.size(), 1u);
        EXPECT_EQ(s.msgs[0].type, SL_MSG_DATA);
        EXPECT_EQ(s.msgs[0].content, m);
        FeedResult c = feed_all(p.client, Pair::frame(p.server, SL_MSG_DATA, m));
        ASSERT_EQ(c.rc, SL_OK);
        ASSERT_EQ(c.msgs.size(), 1u);
        EXPECT_EQ(c.msgs[0].content, m);
    }
}

TEST(TransportTest, FrameLayoutIsIvCounterCiphertextTag) {
    Pair p;
    p.handshake();
    for (uint64_t n = 1; n < 4; ++n) {  // counter 0 was the key-confirmation PING
        Bytes f = Pair::frame(p.client, SL_MSG_DATA, bytes("hello"));
        ASSERT_EQ(f.size(), SL_OVERHEAD_BYTES + 5);
        EXPECT_EQ(hex(f.data(), 4), "00000022");  // 12 + 1 + 5 + 16 = 34
        EXPECT_EQ(hex(f.data() + 4, 12), "00000000" + std::string(14, '0') + "0" + std::to_string(n));
        ASSERT_EQ(feed_all(p.server, f).rc, SL_OK);
    }
}

TEST(TransportTest, BitFlipInEveryBytePositionIsRejected) {
    Pair ref;
    ref.handshake();
    const size_t frame_len = Pair::frame(ref.client, SL_MSG_DATA, bytes("attack at dawn")).size();
    for (size_t i = 0; i < frame_len; ++i) {
        for (int bit = 0; bit < 8; ++bit) {
            Pair p;
            p.handshake();
            Bytes f = Pair::frame(p.client, SL_MSG_DATA, bytes("attack at dawn"));
            f[i] ^= static_cast<uint8_t>(1u << bit);
            FeedResult r = feed_all(p.server, f);
            EXPECT_TRUE(r.msgs.empty()) << "plaintext released from a modified frame, byte " << i;
            if (i < 4) {  // the length: rejected, or waiting for bytes that never come
                int rc = r.rc == SL_OK ? sl_conn_feed_eof(p.server) : r.rc;
                EXPECT_TRUE(rc == SL_EFRAME_TOO_LARGE || rc == SL_EFRAME_TOO_SHORT || rc == SL_ETRUNCATED ||
                            rc == SL_EAUTH)
                    << "byte " << i << " bit " << bit << " rc " << rc;
            } else {
                EXPECT_EQ(r.rc, i < 16 ? SL_EBAD_COUNTER : SL_EAUTH) << "byte " << i << " bit " << bit;
            }
        }
    }
}

TEST(TransportTest, ReplayedFrameIsRejected) {
    Pair p;
    p.handshake();
    Bytes f = Pair::frame(p.client, SL_MSG_DATA, bytes("pay 10 EUR"));
    ASSERT_EQ(feed_all(p.server, f).rc, SL_OK);
    FeedResult r = feed_all(p.server, f);
    EXPECT_EQ(r.rc, SL_EBAD_COUNTER);
    EXPECT_TRUE(r.msgs.empty());
}

TEST(TransportTest, ReorderedFramesAreRejected) {
    Pair p;
    p.handshake();
    Bytes a = Pair::frame(p.client, SL_MSG_DATA, bytes("first"));
    Bytes b = Pair::frame(p.client, SL_MSG_DATA, bytes("second"));
    EXPECT_EQ(feed_all(p.server, b).rc, SL_EBAD_COUNTER);
    EXPECT_EQ(feed_all(p.server, a).rc, SL_ECLOSED) << "the connection is dead after the error";
}

TEST(TransportTest, DroppedFrameIsDetected) {
    Pair p;
    p.handshake();
    Bytes a = Pair::frame(p.client, SL_MSG_DATA, bytes("one"));
    (void)Pair::frame(p.client, SL_MSG_DATA, bytes("two (lost)"));
    Bytes c = Pair::frame(p.client, SL_MSG_DATA, bytes("three"));
    ASSERT_EQ(feed_all(p.server, a).rc, SL_OK);
    EXPECT_EQ(feed_all(p.server, c).rc, SL_EBAD_COUNTER);
}

TEST(TransportTest, FrameFromAnotherSessionFailsAuthentication) {
    Pair a, b;  // same PSK, different ephemerals: different session keys
    a.handshake();
    b.handshake();
    Bytes foreign = Pair::frame(b.client, SL_MSG_DATA, bytes("hello"));
    FeedResult r = feed_all(a.server, foreign);
    EXPECT_EQ(r.rc, SL_EAUTH);
    EXPECT_TRUE(r.msgs.empty());
}

TEST(TransportTest, ServerFrameReflectedToTheServerFailsAuthentication) {
    // Each direction has its own key: a frame cannot be bounced back to its sender.
    Pair p;
    p.handshake();
    Bytes f = Pair::frame(p.server, SL_MSG_DATA, bytes("hello"));
    EXPECT_EQ(feed_all(p.server, f).rc, SL_EAUTH);
}

TEST(TransportTest, UnknownMessageTypeIsAProtocolError) {
    for (uint8_t type : std::initializer_list<uint8_t>{0x00, 0x06, 0x7f, 0xff}) {
        Pair p;
        p.start();
        RawClient raw(p.server);
        EXPECT_EQ(raw.deliver(0, {type, 'x'}), SL_EBAD_TYPE) << int(type);
    }
}

TEST(TransportTest, RawClientSanityCheckDeliversValidData) {
    Pair p;
    p.start();
    RawClient raw(p.server);
    FeedResult r = feed_all(p.server, raw.frame(0, {SL_MSG_DATA, 'o', 'k'}));
    ASSERT_EQ(r.rc, SL_OK);
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(r.msgs[0].content, bytes("ok"));
    EXPECT_EQ(raw.deliver(5, {SL_MSG_DATA}), SL_EBAD_COUNTER);
}

TEST(TransportTest, PingIsAnsweredWithPongCarryingTheSameContent) {
    Pair p;
    p.handshake();
    FeedResult s = feed_all(p.server, Pair::frame(p.client, SL_MSG_PING, bytes("are you there?")));
    ASSERT_EQ(s.rc, SL_OK);
    ASSERT_EQ(s.msgs.size(), 1u);
    EXPECT_EQ(s.msgs[0].type, SL_MSG_PING);
    FeedResult c = feed_all(p.client, take_output(p.server));
    ASSERT_EQ(c.rc, SL_OK);
    ASSERT_EQ(c.msgs.size(), 1u);
    EXPECT_EQ(c.msgs[0].type, SL_MSG_PONG);
    EXPECT_EQ(c.msgs[0].content, bytes("are you there?"));
}

TEST(TransportTest, PingOf64BytesIsFineAnd65IsRefused) {
    Pair p;
    p.handshake();
    Bytes ok(SL_MAX_PING, 'p'), big(SL_MAX_PING + 1, 'p');
    EXPECT_EQ(feed_all(p.server, Pair::frame(p.client, SL_MSG_PING, ok)).rc, SL_OK);
    EXPECT_EQ(sl_conn_send(p.client, SL_MSG_PING, big.data(), big.size()), SL_EBAD_PING);
    EXPECT_EQ(sl_conn_send(p.client, SL_MSG_PONG, big.data(), big.size()), SL_EBAD_PING);
    for (uint8_t type : std::initializer_list<uint8_t>{SL_MSG_PING, SL_MSG_PONG}) {
        Pair q;
        q.start();
        RawClient raw(q.server);
        Bytes pt(SL_MAX_PING + 2, 'p');
        pt[0] = type;
        EXPECT_EQ(raw.deliver(0, pt), SL_EBAD_PING) << int(type);
    }
}

TEST(TransportTest, CloseCarriesAReasonAndEndsTheConversation) {
    Pair p;
    p.handshake();
    Bytes f = Pair::frame(p.client, SL_MSG_CLOSE, bytes("bye"));
    EXPECT_TRUE(sl_conn_is_closed(p.client));
    const uint8_t x = 1;
    EXPECT_EQ(sl_conn_send(p.client, SL_MSG_DATA, &x, 1), SL_ECLOSED);
    Bytes after = Pair::frame(p.server, SL_MSG_DATA, bytes("in flight"));
    EXPECT_EQ(feed_all(p.client, after).rc, SL_OK) << "a side that sent CLOSE still reads";
    f.insert(f.end(), 10, 0xEE);  // garbage after CLOSE is ignored
    FeedResult r = feed_all(p.server, f);
    ASSERT_EQ(r.rc, SL_OK);
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(r.msgs[0].type, SL_MSG_CLOSE);
    EXPECT_EQ(r.msgs[0].content, bytes("bye"));
    EXPECT_TRUE(sl_conn_is_closed(p.server));
    EXPECT_EQ(sl_conn_send(p.server, SL_MSG_DATA, &x, 1), SL_ECLOSED);
    EXPECT_EQ(sl_conn_feed_eof(p.server), SL_OK);
}

TEST(TransportTest, MessageOfExactlyTheLimitPassesAndOneMoreIsRefused) {
    Pair p;
    ASSERT_EQ(sl_conn_set_max_message(p.client, 1000), SL_OK);
    ASSERT_EQ(sl_conn_set_max_message(p.server, 1000), SL_OK);
    p.handshake();
    Bytes at(1000, 'a'), over(1001, 'a');
    FeedResult r = feed_all(p.server, Pair::frame(p.client, SL_MSG_DATA, at));
    ASSERT_EQ(r.rc, SL_OK);
    EXPECT_EQ(r.msgs.at(0).content.size(), 1000u);
    EXPECT_EQ(sl_conn_send(p.client, SL_MSG_DATA, over.data(), over.size()), SL_EMSG_TOO_LARGE);
    EXPECT_EQ(sl_conn_pending_size(p.client), 0u) << "nothing half-sent";
    EXPECT_FALSE(sl_conn_is_closed(p.client)) << "a refused send leaves the connection usable";
}

TEST(TransportTest, DefaultLimitIs16MiBBothWays) {
    Pair p;
    p.handshake();
    Bytes at(SL_DEFAULT_MAX_MESSAGE, 0x5a);
    FeedResult r = feed_all(p.server, Pair::frame(p.client, SL_MSG_DATA, at));
    ASSERT_EQ(r.rc, SL_OK);
    EXPECT_EQ(r.msgs.at(0).content, at);
    at.push_back(0);
    EXPECT_EQ(sl_conn_send(p.client, SL_MSG_DATA, at.data(), at.size()), SL_EMSG_TOO_LARGE);
    EXPECT_EQ(sl_conn_set_max_message(p.client, SIZE_MAX), SL_ESTATE);
}

TEST(TransportTest, MaxMessageAboveTheWireLimitIsInvalid) {
    Pair p;
    EXPECT_EQ(sl_conn_set_max_message(p.client, size_t{SL_MAX_MESSAGE_LIMIT} + 1), SL_EINVAL);
    EXPECT_EQ(sl_conn_set_max_message(p.client, SL_MAX_MESSAGE_LIMIT), SL_OK);
}

// PROTOCOL.md 2: a message's type and content are sealed by one AES-GCM call, whose length is
// an int; the limit keeps every max_message a sender can be given inside that.
TEST(TransportTest, MaxMessageLimitFitsOneAeadCall) {
    EXPECT_LE(uint64_t{SL_MAX_MESSAGE_LIMIT} + SL_TYPE_BYTES, uint64_t{INT_MAX});
    Pair p;
    EXPECT_EQ(sl_conn_set_max_message(p.client, size_t{INT_MAX}), SL_EINVAL);
    EXPECT_EQ(sl_conn_set_max_message(p.client, size_t{1} << 31), SL_EINVAL);
    EXPECT_EQ(sl_conn_set_max_send(p.client, size_t{INT_MAX}), SL_EINVAL);
}

// Just past the limit, and past what one AEAD call takes: the sender refuses (MSG_TOO_LARGE),
// queues nothing, and the connection stays usable (PROTOCOL.md 7). The content is an
// inaccessible mapping: the refusal must come before a single byte of it is read, and costs no
// memory.
TEST(TransportTest, SendPastTheLimitIsRefusedAndTheConnectionStaysUsable) {
    Pair p;
    ASSERT_EQ(sl_conn_set_max_message(p.client, SL_MAX_MESSAGE_LIMIT), SL_OK);
    p.handshake();
    for (size_t len : {size_t{SL_MAX_MESSAGE_LIMIT} + 1, size_t{INT_MAX} + 1}) {
        void *m = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        ASSERT_NE(m, MAP_FAILED);
        EXPECT_EQ(sl_conn_send(p.client, SL_MSG_DATA, static_cast<const uint8_t *>(m), len), SL_EMSG_TOO_LARGE) << len;
        munmap(m, len);
        EXPECT_EQ(sl_conn_pending_size(p.client), 0u);
    }
    const Bytes hello = bytes("still usable");
    FeedResult r = feed_all(p.server, Pair::frame(p.client, SL_MSG_DATA, hello));
    ASSERT_EQ(r.rc, SL_OK);
    EXPECT_EQ(r.msgs.at(0).content, hello);
}

TEST(TransportTest, SendCounterNeverWraps) {
    const auto psk = key_of(4);
    d::Connection client(SL_CLIENT, psk.data()), server(SL_SERVER, psk.data());
    ASSERT_EQ(client.start(), SL_OK);
    ASSERT_EQ(server.start(), SL_OK);
    size_t used = 0;
    sl_event ev{};
    ASSERT_EQ(server.feed(client.pending(), client.pending_size(), &used, &ev), SL_OK);
    ASSERT_EQ(client.consume(used), SL_OK);
    ASSERT_EQ(client.feed(server.pending(), server.pending_size(), &used, &ev), SL_OK);
    ASSERT_EQ(ev.type, SL_EVENT_HANDSHAKE_DONE);
    client.set_send_counter_for_testing(UINT64_MAX - 1);
    EXPECT_EQ(client.send(SL_MSG_DATA, nullptr, 0), SL_OK);
    EXPECT_EQ(client.send(SL_MSG_DATA, nullptr, 0), SL_ENONCE_EXHAUSTED);
}

// 2^64-1 is never sent (PROTOCOL.md 4): a receiver that has accepted 2^64-1 frames refuses the
// next one with BAD_COUNTER, whether it arrives at once or in pieces.
TEST(TransportTest, ReceiveCounterStopsAtTheLimit) {
    const auto psk = key_of(4);
    for (size_t chunk : {size_t{0}, size_t{1}, size_t{9}}) {
        SCOPED_TRACE(chunk);
        d::Connection server(SL_SERVER, psk.data());
        ASSERT_EQ(server.start(), SL_OK);
        d::Handshake hs;  // a hand-driven client: it can seal any counter
        ASSERT_EQ(hs.init(true, d::kPrologue, sizeof d::kPrologue, psk.data()), SL_OK);
        uint8_t msg[64], payload[64], k1[32], k2[32], h[32];
        size_t len = 0, used = 0;
        ASSERT_EQ(hs.write_message(nullptr, 0, msg, &len), SL_OK);
        Bytes f1 = {0, 0, 0, static_cast<uint8_t>(5 + len), 'S', 'L', 'N', 'K', 1};
        f1.insert(f1.end(), msg, msg + len);
        sl_event ev{};
        ASSERT_EQ(server.feed(f1.data(), f1.size(), &used, &ev), SL_OK);
        ASSERT_EQ(ev.type, SL_EVENT_HANDSHAKE_DONE);
        ASSERT_EQ(hs.read_message(server.pending() + 4, server.pending_size() - 4, payload, &len), SL_OK);
        server.consume(server.pending_size());
        ASSERT_EQ(hs.split(k1, k2, h), SL_OK);
        d::Aead aead;
        ASSERT_EQ(aead.init(k1, true), SL_OK);
        auto frame = [&](uint64_t n, uint8_t c) {
            const Bytes pt = {SL_MSG_DATA, c};
            Bytes f(4 + 12 + pt.size() + 16);
            f[3] = static_cast<uint8_t>(f.size() - 4);
            d::make_nonce(n, f.data() + 4);
            EXPECT_EQ(aead.seal(f.data() + 4, nullptr, 0, pt.data(), pt.size(), nullptr, 0, f.data() + 16,
                                f.data() + 16 + pt.size()),
                      SL_OK);
            return f;
        };
        // Feeds a frame (in chunks); returns the error, or the message's byte (-1: none).
        auto deliver = [&](const Bytes &f, int *got) -> int {
            *got = -1;
            const size_t step = chunk == 0 ? f.size() : chunk;
            for (size_t off = 0; off < f.size();) {
                const size_t n = std::min(step, f.size() - off);
                size_t u = 0;
                int rc = server.feed(f.data() + off, n, &u, &ev);
                if (rc != SL_OK) return rc;
                if (ev.type == SL_EVENT_MESSAGE) *got = ev.data[0];
                off += u;
            }
            return SL_OK;
        };
        server.set_recv_counter_for_testing(UINT64_MAX - 1);
        int got = 0;
        EXPECT_EQ(deliver(frame(UINT64_MAX - 1, 'a'), &got), SL_OK);
        EXPECT_EQ(got, 'a') << "the last counter a sender may use";
        EXPECT_EQ(deliver(frame(UINT64_MAX, 'b'), &got), SL_EBAD_COUNTER);
        EXPECT_EQ(got, -1);
    }
}

TEST(TransportTest, InvalidSendArgumentsAreRejected) {
    Pair p;
    p.handshake();
    EXPECT_EQ(sl_conn_send(p.client, 0, nullptr, 0), SL_EINVAL);
    EXPECT_EQ(sl_conn_send(p.client, 5, nullptr, 0), SL_EINVAL);
    EXPECT_EQ(sl_conn_send(p.client, SL_MSG_DATA, nullptr, 3), SL_EINVAL);
    EXPECT_EQ(sl_conn_consume(p.client, 1), SL_EINVAL);
}

TEST(TransportTest, PartialConsumeKeepsTheRestPending) {
    Pair p;
    p.handshake();
    Bytes a = pattern(100);
    ASSERT_EQ(sl_conn_send(p.client, SL_MSG_DATA, a.data(), a.size()), SL_OK);
    const uint8_t *out = nullptr;
    size_t n = 0;
    ASSERT_EQ(sl_conn_pending(p.client, &out, &n), SL_OK);
    Bytes wire(out, out + 10);
    ASSERT_EQ(sl_conn_consume(p.client, 10), SL_OK);
    ASSERT_EQ(sl_conn_send(p.client, SL_MSG_DATA, a.data(), a.size()), SL_OK);  // appended behind
    Bytes rest = take_output(p.client);
    wire.insert(wire.end(), rest.begin(), rest.end());
    FeedResult r = feed_all(p.server, wire);
    ASSERT_EQ(r.rc, SL_OK);
    ASSERT_EQ(r.msgs.size(), 2u);
    EXPECT_EQ(r.msgs[1].content, a);
}

TEST(TransportTest, TrimKeepsPartialInputAndPendingOutput) {
    Pair p;
    p.handshake();
    Bytes big = pattern(1 << 20);
    ASSERT_EQ(feed_all(p.server, Pair::frame(p.client, SL_MSG_DATA, big)).rc, SL_OK);
    EXPECT_EQ(sl_conn_trim(p.server), SL_OK);
    Bytes f = Pair::frame(p.client, SL_MSG_DATA, big);
    Bytes first(f.begin(), f.begin() + 1000), rest(f.begin() + 1000, f.end());
    ASSERT_EQ(feed_all(p.server, first).rc, SL_OK);
    ASSERT_EQ(sl_conn_send(p.server, SL_MSG_DATA, big.data(), 10), SL_OK);
    EXPECT_EQ(sl_conn_trim(p.server), SL_OK);  // mid-frame, with output queued
    FeedResult r = feed_all(p.server, rest);
    ASSERT_EQ(r.rc, SL_OK);
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(r.msgs[0].content, big);
    FeedResult c = feed_all(p.client, take_output(p.server));
    ASSERT_EQ(c.rc, SL_OK);
    EXPECT_EQ(c.msgs.at(0).content, Bytes(big.begin(), big.begin() + 10));
    EXPECT_EQ(sl_conn_trim(nullptr), SL_EINVAL);
}

TEST(TransportTest, TamperedFrameArrivingInPiecesReleasesNothing) {
    // Frames that arrive in pieces are decrypted as they arrive: the tag must still gate them.
    const Bytes msg = pattern(5000);
    for (size_t chunk : {size_t{1}, size_t{7}, size_t{1000}}) {
        for (size_t pos : {size_t{4}, size_t{15}, size_t{16}, size_t{2500}, size_t{5000 + 16}, size_t{5000 + 32}}) {
            Pair p;
            p.handshake();
            Bytes f = Pair::frame(p.client, SL_MSG_DATA, msg);
            f[pos] ^= 0x20;
            FeedResult r = feed_all(p.server, f, chunk);
            EXPECT_EQ(r.rc, pos < 16 ? SL_EBAD_COUNTER : SL_EAUTH) << "chunk " << chunk << " byte " << pos;
            EXPECT_TRUE(r.msgs.empty());
        }
    }
}
