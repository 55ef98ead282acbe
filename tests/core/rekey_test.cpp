// Rekeying (PROTOCOL.md 13): KEY_UPDATE on request and past a byte threshold, REKEY as Noise
// defines it, the vectors replayed byte for byte, and what a receiver refuses.
#include <cstring>
#include <deque>
#include <string>

#include "crypto.hpp"
#include "test_util.hpp"

using namespace sltest;
namespace d = seclink::detail;

namespace {

int type_of(const std::string &name) {
    if (name == "DATA") return SL_MSG_DATA;
    if (name == "CLOSE") return SL_MSG_CLOSE;
    if (name == "PING") return SL_MSG_PING;
    if (name == "PONG") return SL_MSG_PONG;
    if (name == "KEY_UPDATE") return SL_MSG_KEY_UPDATE;
    ADD_FAILURE() << name;
    return 0;
}

// Splits the output of `c` into frames.
std::deque<Bytes> frames_of(sl_conn *c) {
    std::deque<Bytes> out;
    Bytes all = take_output(c);
    size_t pos = 0;
    while (pos + 4 <= all.size()) {
        const size_t n = (size_t{all[pos]} << 24) | (size_t{all[pos + 1]} << 16) | (size_t{all[pos + 2]} << 8) | all[pos + 3];
        out.emplace_back(all.begin() + static_cast<long>(pos), all.begin() + static_cast<long>(pos + 4 + n));
        pos += 4 + n;
    }
    return out;
}

struct RekeyVectorSession {
    const nlohmann::json &v;
    sl_conn *peer[2] = {nullptr, nullptr};  // client, server
    std::deque<Bytes> queued[2];
    explicit RekeyVectorSession(const nlohmann::json &vec) : v(vec) {
        const Bytes psk = unhex(v["psk"]);
        const Bytes eph[2] = {unhex(v["client_ephemeral"]), unhex(v["server_ephemeral"])};
        for (int i = 0; i < 2; ++i) {
            EXPECT_EQ(sl_conn_new(&peer[i], i == 0 ? SL_CLIENT : SL_SERVER, psk.data()), SL_OK);
            EXPECT_EQ(sl_conn_set_ephemeral_for_testing(peer[i], eph[i].data()), SL_OK);
            EXPECT_EQ(sl_conn_set_rekey_bytes(peer[i], v["rekey_bytes"].get<uint64_t>()), SL_OK);
            EXPECT_EQ(sl_conn_start(peer[i]), SL_OK);
        }
    }
    ~RekeyVectorSession() {
        sl_conn_free(peer[0]);
        sl_conn_free(peer[1]);
    }
    void play(size_t i) {
        const auto &e = v["wire"][i];
        const int from = e["from"] == "client" ? 0 : 1;
        auto &q = queued[from];
        for (auto &f : frames_of(peer[from])) q.push_back(std::move(f));
        if (q.empty()) {
            ASSERT_EQ(e["kind"], "transport") << i;
            const int type = type_of(e["type"]);
            const Bytes content = unhex(e["content"]);
            if (type == SL_MSG_KEY_UPDATE) {
                ASSERT_EQ(sl_conn_rekey(peer[from]), SL_OK);
            } else {
                ASSERT_EQ(sl_conn_send(peer[from], type, content.data(), content.size()), SL_OK);
            }
            for (auto &f : frames_of(peer[from])) q.push_back(std::move(f));
        }
        ASSERT_FALSE(q.empty()) << i;
        const Bytes frame = q.front();
        q.pop_front();
        ASSERT_EQ(hex(frame), e["bytes"].get<std::string>()) << "entry " << i;
        FeedResult r = feed_all(peer[1 - from], frame);
        ASSERT_EQ(r.rc, SL_OK) << i;
        if (e.contains("type") && (e["type"] == "DATA" || e["type"] == "CLOSE")) {
            ASSERT_EQ(r.msgs.size(), 1u);
            EXPECT_EQ(hex(r.msgs[0].content), e["content"].get<std::string>());
        }
        if (e.contains("type") && e["type"] == "KEY_UPDATE") {
            EXPECT_TRUE(r.msgs.empty()) << "never delivered";
        }
    }
};

}  // namespace

TEST(RekeyTest, RekeyIsNoiseRekeyFirst32BytesOfEncryptAtMaxNonce) {
    uint8_t k[32], expect[32], tag[16], iv[12];
    for (int i = 0; i < 32; ++i) k[i] = static_cast<uint8_t>(i);
    const uint8_t zeros[32] = {};
    d::Aead a;
    ASSERT_EQ(a.init(k, true), SL_OK);
    d::make_nonce(UINT64_MAX, iv);
    ASSERT_EQ(a.seal(iv, nullptr, 0, zeros, 32, nullptr, 0, expect, tag), SL_OK);
    ASSERT_EQ(d::noise_rekey(k), SL_OK);
    EXPECT_EQ(hex(k, 32), hex(expect, 32));
    EXPECT_EQ(hex(k, 32), "0201675c87335949b909793da5bb4d92fcf6d44b92a6e0792b6ae48b1881259d") << "fixed by the reference";
}

TEST(RekeyVectorTest, WholeRekeyedConnectionReproducedByteForByte) {
    const nlohmann::json v = project_vectors("seclink_v1_rekey.json");
    RekeyVectorSession s(v);
    size_t updates = 0;
    for (size_t i = 0; i < v["wire"].size(); ++i) {
        s.play(i);
        if (::testing::Test::HasFatalFailure()) return;
        updates += v["wire"][i].value("type", "") == "KEY_UPDATE";
    }
    uint64_t sent[2], received[2];
    for (int i = 0; i < 2; ++i) ASSERT_EQ(sl_conn_rekeys(s.peer[i], &sent[i], &received[i]), SL_OK);
    EXPECT_EQ(sent[0], received[1]);
    EXPECT_EQ(sent[1], received[0]);
    EXPECT_EQ(sent[0] + sent[1], updates);
    EXPECT_EQ(sent[0] + 1, v["rekeyed_keys"]["client_to_server"].size());
    EXPECT_EQ(sent[1] + 1, v["rekeyed_keys"]["server_to_client"].size());
    EXPECT_GE(updates, 4u);
}

TEST(RekeyVectorTest, KeyUpdateWithContentIsRefused) {
    const nlohmann::json v = project_vectors("seclink_v1_rekey.json");
    for (const auto &m : v["malformed"]) {
        RekeyVectorSession s(v);
        for (size_t i = 0; i < m["after"].get<size_t>(); ++i) s.play(i);
        FeedResult r = feed_all(s.peer[m["to"] == "client" ? 0 : 1], unhex(m["bytes"]));
        EXPECT_STREQ(sl_errname(r.rc), m["error"].get<std::string>().c_str());
        EXPECT_TRUE(r.msgs.empty());
    }
}

TEST(RekeyTest, ThresholdCountsBytesNotOnlyFrames) {
    Pair p;
    ASSERT_EQ(sl_conn_set_rekey_bytes(p.client, 1000), SL_OK);
    p.handshake();  // the confirmation PING: 17 bytes under the first key
    uint64_t sent = 0;
    // One 966-byte message brings the total to 17 + 967 + 16 = 1000: a KEY_UPDATE follows at once.
    FeedResult r = feed_all(p.server, Pair::frame(p.client, SL_MSG_DATA, Bytes(966, 'a')));
    ASSERT_EQ(r.rc, SL_OK);
    ASSERT_EQ(sl_conn_rekeys(p.client, &sent, nullptr), SL_OK);
    EXPECT_EQ(sent, 1u);
    // Then 1-byte messages: 18 bytes each, so the 56th (1008 bytes) passes the threshold again.
    for (int i = 0; i < 55; ++i) ASSERT_EQ(feed_all(p.server, Pair::frame(p.client, SL_MSG_DATA, bytes("x"))).rc, SL_OK);
    ASSERT_EQ(sl_conn_rekeys(p.client, &sent, nullptr), SL_OK);
    EXPECT_EQ(sent, 1u);
    ASSERT_EQ(feed_all(p.server, Pair::frame(p.client, SL_MSG_DATA, bytes("x"))).rc, SL_OK);
    uint64_t got = 0;
    ASSERT_EQ(sl_conn_rekeys(p.client, &sent, nullptr), SL_OK);
    ASSERT_EQ(sl_conn_rekeys(p.server, nullptr, &got), SL_OK);
    EXPECT_EQ(sent, 2u);
    EXPECT_EQ(got, 2u);
    EXPECT_EQ(sl_conn_set_rekey_bytes(p.client, 0), SL_EINVAL);
}

TEST(RekeyTest, AfterAKeyUpdateTheOldKeyOpensNothing) {
    // Two identical sessions (fixed ephemerals): in `a` the client rekeys after "one", in `b` it
    // does not, so b's frame with counter 3 is a(n otherwise perfect) frame under the old key.
    const Bytes ce(32, 1), se(32, 2);
    Pair a, b;
    for (Pair *p : {&a, &b}) {
        ASSERT_EQ(sl_conn_set_ephemeral_for_testing(p->client, ce.data()), SL_OK);
        ASSERT_EQ(sl_conn_set_ephemeral_for_testing(p->server, se.data()), SL_OK);
        p->handshake();
        ASSERT_EQ(feed_all(p->server, Pair::frame(p->client, SL_MSG_DATA, bytes("one"))).rc, SL_OK);
    }
    ASSERT_EQ(sl_conn_rekey(a.client), SL_OK);
    ASSERT_EQ(feed_all(a.server, take_output(a.client)).rc, SL_OK);  // the KEY_UPDATE, counter 2
    (void)Pair::frame(b.client, SL_MSG_DATA, bytes("x"));           // counter 2, old key
    const Bytes old_key_frame = Pair::frame(b.client, SL_MSG_DATA, bytes("two"));
    const Bytes new_key_frame = Pair::frame(a.client, SL_MSG_DATA, bytes("two"));
    ASSERT_EQ(old_key_frame.size(), new_key_frame.size());
    EXPECT_NE(old_key_frame, new_key_frame);
    FeedResult r = feed_all(a.server, old_key_frame);
    EXPECT_EQ(r.rc, SL_EAUTH);
    EXPECT_TRUE(r.msgs.empty());
}

TEST(RekeyTest, RekeyStateErrors) {
    Pair p;
    EXPECT_EQ(sl_conn_rekey(p.client), SL_ESTATE);
    EXPECT_EQ(sl_conn_rekey(nullptr), SL_EINVAL);
    p.handshake();
    EXPECT_EQ(sl_conn_send(p.client, SL_MSG_KEY_UPDATE, nullptr, 0), SL_EINVAL) << "only through sl_conn_rekey";
    ASSERT_EQ(sl_conn_send(p.client, SL_MSG_CLOSE, nullptr, 0), SL_OK);
    EXPECT_EQ(sl_conn_rekey(p.client), SL_ECLOSED);
}
