// Key rotation (PROTOCOL.md 12): a server that accepts several pre-shared keys finds the client's
// by trial decryption of frame 1; the vectors, the engine's limits, and the session's log line.
#include <cstring>
#include <string>
#include <vector>

#include "identity_util.hpp"

using namespace sltest;

namespace {

Bytes joined(const std::vector<std::array<uint8_t, 32>> &keys) {
    Bytes out;
    for (const auto &k : keys) out.insert(out.end(), k.begin(), k.end());
    return out;
}

}  // namespace

TEST(RotationVectorTest, ServerWithSeveralKeysAnswersExactly) {
    const nlohmann::json v = project_vectors("seclink_v1_rotation.json");
    Bytes keys;
    for (const auto &k : v["psks"]) {
        Bytes b = unhex(k);
        keys.insert(keys.end(), b.begin(), b.end());
    }
    const size_t n = v["psks"].size();
    const Bytes se = unhex(v["server_ephemeral"]);
    sl_conn *server = nullptr;
    ASSERT_EQ(sl_conn_new(&server, SL_SERVER, keys.data()), SL_OK);
    ASSERT_EQ(sl_conn_set_psks(server, keys.data(), n), SL_OK);
    ASSERT_EQ(sl_conn_set_ephemeral_for_testing(server, se.data()), SL_OK);
    ASSERT_EQ(sl_conn_start(server), SL_OK);
    EXPECT_EQ(sl_conn_psk_index(server), -1);
    FeedResult r = feed_all(server, unhex(v["frame1"]));
    ASSERT_EQ(r.rc, SL_OK);
    EXPECT_TRUE(r.handshake_done);
    EXPECT_EQ(sl_conn_psk_index(server), v["client_psk_index"].get<int>());
    EXPECT_EQ(hex(take_output(server)), v["frame2"].get<std::string>());
    uint8_t h[32];
    ASSERT_EQ(sl_conn_handshake_hash(server, h), SL_OK);
    EXPECT_EQ(hex(h, 32), v["handshake_hash"].get<std::string>());
    sl_conn_free(server);

    // A frame 1 made with a key not in the list: HANDSHAKE_AUTH, nothing sent.
    ASSERT_EQ(sl_conn_new(&server, SL_SERVER, keys.data()), SL_OK);
    ASSERT_EQ(sl_conn_set_psks(server, keys.data(), n), SL_OK);
    ASSERT_EQ(sl_conn_start(server), SL_OK);
    r = feed_all(server, unhex(v["frame1_no_key"]));
    EXPECT_STREQ(sl_errname(r.rc), v["frame1_no_key_error"].get<std::string>().c_str());
    EXPECT_EQ(sl_conn_pending_size(server), 0u);
    EXPECT_EQ(sl_conn_psk_index(server), -1);
    sl_conn_free(server);
}

TEST(RotationTest, EveryKeyOfTheRingIsAcceptedAndTheLastSlotCounts) {
    std::vector<std::array<uint8_t, 32>> ring;
    for (unsigned i = 0; i < SL_MAX_PSKS; ++i) ring.push_back(key_of(static_cast<uint8_t>(40 + i)));
    const Bytes keys = joined(ring);
    for (size_t want : {size_t{0}, size_t{5}, size_t{SL_MAX_PSKS - 1}}) {
        SCOPED_TRACE(want);
        Pair p(ring[want], ring[0]);
        ASSERT_EQ(sl_conn_set_psks(p.server, keys.data(), ring.size()), SL_OK);
        p.handshake();
        EXPECT_EQ(sl_conn_psk_index(p.server), static_cast<int>(want));
        FeedResult r = feed_all(p.client, take_output(p.server));  // nothing pending; the pair works:
        ASSERT_EQ(r.rc, SL_OK);
        r = feed_all(p.server, Pair::frame(p.client, SL_MSG_DATA, bytes("hi")));
        ASSERT_EQ(r.msgs.size(), 1u);
    }
    Pair outsider(key_of(99), ring[0]);
    ASSERT_EQ(sl_conn_set_psks(outsider.server, keys.data(), ring.size()), SL_OK);
    outsider.start();
    EXPECT_EQ(feed_all(outsider.server, take_output(outsider.client)).rc, SL_EHANDSHAKE_AUTH);
}

TEST(RotationTest, SetPsksRefusesClientsTooManyKeysAndLateCalls) {
    const Bytes keys(32 * (SL_MAX_PSKS + 1), 7);
    Pair p;
    EXPECT_EQ(sl_conn_set_psks(p.client, keys.data(), 1), SL_EINVAL);
    EXPECT_EQ(sl_conn_set_psks(p.server, keys.data(), 0), SL_EINVAL);
    EXPECT_EQ(sl_conn_set_psks(p.server, keys.data(), SL_MAX_PSKS + 1), SL_EINVAL);
    EXPECT_EQ(sl_conn_set_psks(p.server, nullptr, 1), SL_EINVAL);
    p.start();
    EXPECT_EQ(sl_conn_set_psks(p.server, keys.data(), 1), SL_ESTATE);
    EXPECT_EQ(sl_conn_psk_index(p.client), -1);
}

TEST(RotationTest, SessionLogsWhichKeyFileMatchedNeverTheKey) {
    const std::vector<std::array<uint8_t, 32>> ring = {key_of(1), key_of(2)};
    const Bytes keys = joined(ring);
    const char *names[] = {"/keys/old.psk", "/keys/new.psk"};
    Logs logs;
    sl_server_config cfg;
    sl_server_config_init(&cfg);
    cfg.psk = keys.data();
    cfg.psk_count = 2;
    cfg.psk_names = names;
    cfg.log = &Logs::fn;
    cfg.log_ud = &logs;
    cfg.log_level = SL_LOG_TRACE;
    sl_policy *policy = nullptr;
    ASSERT_EQ(sl_policy_new(&policy, &cfg), SL_OK);
    for (size_t k = 0; k < 2; ++k) {
        sl_conn *client = nullptr;
        ASSERT_EQ(sl_conn_new(&client, SL_CLIENT, ring[k].data()), SL_OK);
        ASSERT_EQ(sl_conn_start(client), SL_OK);
        sl_session *s = nullptr;
        const std::string peer = "10.1.1.1:" + std::to_string(100 + k);
        ASSERT_EQ(sl_session_new(&s, policy, peer.c_str(), 0), SL_OK);
        Waker waker;
        ASSERT_EQ(exchange(client, s, waker).rc, SL_OK);  // frame 1, then the key-confirmation PING
        EXPECT_TRUE(logs.has("[INFO] " + peer + " handshake complete (key " + names[k] + ")"));
        sl_session_free(s);
        sl_conn_free(client);
    }
    EXPECT_EQ(sl_policy_sessions(policy), 0u);
    for (const auto &l : logs.lines)
        for (const auto &k : ring) EXPECT_EQ(l.find(hex(k.data(), 32)), std::string::npos);
    sl_policy_free(policy);

    cfg.psk_count = SL_MAX_PSKS + 1;
    EXPECT_EQ(sl_policy_new(&policy, &cfg), SL_EINVAL);
}

// PROTOCOL.md 12, "The other modes": in mode 3 the PSK is mixed in only at the end of frame 3, so a
// server with several keys finds the client's there. The mode-3 vectors, with the vector's key
// second in the server's list: the same frames, the same handshake hash, key index 1.
TEST(RotationVectorTest, Mode3ServerFindsTheClientsKeyInFrame3) {
    const nlohmann::json v = project_vectors("seclink_v1_user_key.json");
    const Bytes psk = unhex(v["psk"]), se = unhex(v["server_ephemeral"]), ss = unhex(v["server_static"]);
    Bytes keys(32, 0x77);  // a key the client does not hold, first
    keys.insert(keys.end(), psk.begin(), psk.end());
    sl_conn *server = vector_server(keys, se, ss);
    const auto &w = v["wire"];
    ASSERT_FALSE(feed_all(server, unhex(w[0]["bytes"])).handshake_done);
    EXPECT_EQ(hex(take_output(server)), w[1]["bytes"].get<std::string>()) << "frame 2 does not depend on the PSK";
    FeedResult r = feed_all(server, unhex(w[2]["bytes"]));
    ASSERT_EQ(r.rc, SL_OK);
    ASSERT_TRUE(r.handshake_done);
    EXPECT_EQ(sl_conn_psk_index(server), 1);
    uint8_t h[32];
    ASSERT_EQ(sl_conn_handshake_hash(server, h), SL_OK);
    EXPECT_EQ(hex(h, 32), v["handshake_hash"].get<std::string>());
    r = feed_all(server, unhex(w[3]["bytes"]));  // and the client's first message decrypts
    ASSERT_EQ(r.rc, SL_OK);
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(hex(r.msgs[0].content), w[3]["content"].get<std::string>());
    sl_conn_free(server);

    // Neither key: HANDSHAKE_AUTH on frame 3.
    server = vector_server(Bytes(64, 0x66), se, ss);
    ASSERT_EQ(feed_all(server, unhex(w[0]["bytes"])).rc, SL_OK);
    (void)take_output(server);
    EXPECT_EQ(feed_all(server, unhex(w[2]["bytes"])).rc, SL_EHANDSHAKE_AUTH);
    sl_conn_free(server);
}
