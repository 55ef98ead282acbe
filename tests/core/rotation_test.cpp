// Key rotation (PROTOCOL.md 12): a server that accepts several pre-shared keys finds the client's
// by trial decryption of frame 1; the vectors, the engine's limits, and the session's log line.
#include <cstring>
#include <string>
#include <vector>

#include "test_util.hpp"

using namespace sltest;

namespace {

Bytes joined(const std::vector<std::array<uint8_t, 32>> &keys) {
    Bytes out;
    for (const auto &k : keys) out.insert(out.end(), k.begin(), k.end());
    return out;
}

struct Logs {
    std::vector<std::string> lines;
    static void fn(void *ud, int, const char *line) { static_cast<Logs *>(ud)->lines.emplace_back(line); }
    bool has(const std::string &text) const {
        for (const auto &l : lines)
            if (l.find(text) != std::string::npos) return true;
        return false;
    }
};

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
        for (int round = 0; round < 2; ++round) {  // frame 1, then the key-confirmation PING
            const Bytes in = take_output(client);
            size_t used = 0, mlen = 0;
            const uint8_t *msg = nullptr;
            ASSERT_EQ(sl_session_feed(s, in.data(), in.size(), 0, &used, &msg, &mlen), SL_OK);
            const uint8_t *out = nullptr;
            size_t n = 0;
            ASSERT_EQ(sl_session_pending(s, &out, &n), SL_OK);
            ASSERT_EQ(feed_all(client, Bytes(out, out + n)).rc, SL_OK);
            ASSERT_EQ(sl_session_consume(s, n, 0), SL_OK);
        }
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
