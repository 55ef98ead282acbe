// Key users (PROTOCOL.md 15): mode 3 (Noise XXpsk3) reproduced from the vectors; the session layer
// lets in only listed keys, names the user in its log lines, and reloads the list.
#include <fstream>
#include <string>

#include "identity_util.hpp"

using namespace sltest;

TEST(UserKeyVectorTest, Mode3ConnectionReproducedByteForByte) {
    const nlohmann::json v = project_vectors("seclink_v1_user_key.json");
    const Bytes psk = unhex(v["psk"]), ce = unhex(v["client_ephemeral"]), se = unhex(v["server_ephemeral"]);
    const Bytes ss = unhex(v["server_static"]), cs = unhex(v["client_static"]), sp = unhex(v["server_static_public"]);
    sl_conn *client = identity_client(psk, SL_MODE_USER_KEY, sp.data(), &cs, "", "", &ce);
    sl_conn *server = vector_server(psk, se, ss);
    const auto &w = v["wire"];
    EXPECT_EQ(hex(take_output(client)), w[0]["bytes"].get<std::string>());
    FeedResult r = feed_all(server, unhex(w[0]["bytes"]));
    ASSERT_EQ(r.rc, SL_OK);
    EXPECT_FALSE(r.handshake_done) << "the server waits for frame 3";
    EXPECT_EQ(hex(take_output(server)), w[1]["bytes"].get<std::string>());
    ASSERT_TRUE(feed_all(client, unhex(w[1]["bytes"])).handshake_done);
    EXPECT_EQ(hex(take_output(client)), w[2]["bytes"].get<std::string>()) << "frame 3, and no confirmation PING";
    ASSERT_TRUE(feed_all(server, unhex(w[2]["bytes"])).handshake_done);
    EXPECT_TRUE(sl_conn_peer_confirmed(server));
    uint8_t got[32], h[32];
    ASSERT_EQ(sl_conn_client_key(server, got), SL_OK);
    EXPECT_EQ(hex(got, 32), v["client_static_public"].get<std::string>());
    ASSERT_EQ(sl_conn_handshake_hash(server, h), SL_OK);
    EXPECT_EQ(hex(h, 32), v["handshake_hash"].get<std::string>());
    const Bytes hello = unhex(w[3]["content"]);
    ASSERT_EQ(sl_conn_send(client, SL_MSG_DATA, hello.data(), hello.size()), SL_OK);
    EXPECT_EQ(hex(take_output(client)), w[3]["bytes"].get<std::string>());
    sl_conn_free(client);
    sl_conn_free(server);
    for (const auto &m : v["malformed"]) {
        SCOPED_TRACE(m["name"].get<std::string>());
        server = vector_server(psk, se, ss);
        ASSERT_EQ(feed_all(server, unhex(w[0]["bytes"])).rc, SL_OK);
        (void)take_output(server);
        EXPECT_STREQ(sl_errname(feed_all(server, unhex(m["bytes"])).rc), m["error"].get<std::string>().c_str());
        EXPECT_EQ(sl_conn_client_key(server, got), SL_ESTATE);
        sl_conn_free(server);
    }
}

TEST(UserKeyTest, OnlyListedKeysGetInNamedInEveryLineAndReloadRevokes) {
    TempDir dir;
    const std::string path = dir.file("authorized_keys");
    const Bytes psk(32, 4), server_priv(32, 5), alice(32, 6), bob(32, 7);
    uint8_t alice_pub[32], bob_pub[32];
    ASSERT_EQ(sl_key_public(alice.data(), alice_pub), SL_OK);
    ASSERT_EQ(sl_key_public(bob.data(), bob_pub), SL_OK);
    std::ofstream(path) << "# users\nalice " << b64(alice_pub, 32) << "\nbob " << b64(bob_pub, 32) << "\n";
    Logs logs;
    sl_server_config cfg = identity_config(psk, server_priv, logs);
    cfg.authorized_keys = path.c_str();
    sl_policy *policy = nullptr;
    ASSERT_EQ(sl_policy_new(&policy, &cfg), SL_OK);
    uint8_t server_pub[32];
    ASSERT_EQ(sl_key_public(server_priv.data(), server_pub), SL_OK);
    auto session_for = [&](const Bytes &identity, const char *peer, FeedResult *r) {
        sl_conn *c = identity_client(psk, SL_MODE_USER_KEY, server_pub, &identity);
        sl_session *s = nullptr;
        EXPECT_EQ(sl_session_new(&s, policy, peer, 0), SL_OK);
        Waker waker;
        *r = exchange(c, s, waker);
        const std::string hi = "hi";
        EXPECT_EQ(sl_conn_send(c, SL_MSG_DATA, reinterpret_cast<const uint8_t *>(hi.data()), hi.size()),
                  sl_session_status(s) == SL_SESSION_OPEN ? SL_OK : SL_ECLOSED);
        FeedResult more = exchange(c, s, waker);
        r->msgs.insert(r->msgs.end(), more.msgs.begin(), more.msgs.end());
        const std::string user = sl_session_user(s);
        sl_session_free(s);
        sl_conn_free(c);
        return user;
    };
    FeedResult r;
    EXPECT_EQ(session_for(alice, "10.0.0.1:1", &r), "alice");
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_TRUE(logs.has("[INFO] alice@10.0.0.1:1 handshake complete (mode user-key)"));
    EXPECT_TRUE(logs.has("[RECV] alice@10.0.0.1:1 #1 hi (2 bytes)"));
    EXPECT_TRUE(logs.has("[INFO] alice@10.0.0.1:1 disconnected"));
    const Bytes stranger(32, 9);
    EXPECT_EQ(session_for(stranger, "10.0.0.2:1", &r), "");
    ASSERT_EQ(r.msgs.size(), 1u);
    EXPECT_EQ(r.msgs[0].type, SL_MSG_CLOSE);
    EXPECT_EQ(std::string(r.msgs[0].content.begin(), r.msgs[0].content.end()), "unknown user");
    EXPECT_TRUE(logs.has("[WARN] 10.0.0.2:1 disconnected: refused: unknown user (key "));
    // bob is removed: from the next handshake on he is refused; a bad file keeps the list.
    std::ofstream(path) << "alice " << b64(alice_pub, 32) << "\n";
    ASSERT_EQ(sl_policy_reload_users(policy), SL_OK);
    EXPECT_TRUE(logs.has("authorized keys " + path + ": 1 user"));
    EXPECT_EQ(session_for(bob, "10.0.0.3:1", &r), "");
    std::ofstream(path) << "alice not-base64\n";
    EXPECT_EQ(sl_policy_reload_users(policy), SL_EKEY_FORMAT);
    EXPECT_TRUE(logs.has("line 1: KEY_FORMAT"));
    EXPECT_EQ(session_for(alice, "10.0.0.4:1", &r), "alice");
    sl_policy_free(policy);
}
