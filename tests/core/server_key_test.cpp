// Server identity (PROTOCOL.md 14): mode 2 (Noise NXpsk2) reproduced from the vectors, what a
// client refuses, the modes frame, fingerprints and the known-servers file.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "test_util.hpp"

using namespace sltest;

namespace {

struct Mode2 {
    const nlohmann::json v = project_vectors("seclink_v1_server_key.json");
    sl_conn *client = nullptr, *server = nullptr;
    // expected: the server key the client expects ("" for none).
    explicit Mode2(const std::string &expected, unsigned accepted = SL_MODES_ALL) {
        const Bytes psk = unhex(v["psk"]), ce = unhex(v["client_ephemeral"]), se = unhex(v["server_ephemeral"]);
        const Bytes st = unhex(v["server_static"]);
        EXPECT_EQ(sl_conn_new(&client, SL_CLIENT, psk.data()), SL_OK);
        EXPECT_EQ(sl_conn_new(&server, SL_SERVER, psk.data()), SL_OK);
        EXPECT_EQ(sl_conn_set_ephemeral_for_testing(client, ce.data()), SL_OK);
        EXPECT_EQ(sl_conn_set_ephemeral_for_testing(server, se.data()), SL_OK);
        EXPECT_EQ(sl_conn_set_mode(client, SL_MODE_SERVER_KEY), SL_OK);
        if (!expected.empty()) {
            EXPECT_EQ(sl_conn_set_server_key(client, unhex(expected).data()), SL_OK);
        }
        EXPECT_EQ(sl_conn_set_static_key(server, st.data()), SL_OK);
        EXPECT_EQ(sl_conn_set_accepted_modes(server, accepted), SL_OK);
        EXPECT_EQ(sl_conn_start(client), SL_OK);
        EXPECT_EQ(sl_conn_start(server), SL_OK);
    }
    ~Mode2() {
        sl_conn_free(client);
        sl_conn_free(server);
    }
};

std::string fp(const Bytes &pub) {
    char buf[64];
    EXPECT_EQ(sl_key_fingerprint(pub.data(), buf, sizeof buf), SL_OK);
    return buf;
}

}  // namespace

TEST(ServerKeyVectorTest, Mode2ConnectionReproducedByteForByte) {
    Mode2 m(project_vectors("seclink_v1_server_key.json")["server_static_public"].get<std::string>());
    const auto &w = m.v["wire"];
    EXPECT_EQ(hex(take_output(m.client)), w[0]["bytes"].get<std::string>());
    ASSERT_TRUE(feed_all(m.server, unhex(w[0]["bytes"])).handshake_done);
    EXPECT_EQ(hex(take_output(m.server)), w[1]["bytes"].get<std::string>());
    FeedResult r = feed_all(m.client, unhex(w[1]["bytes"]));
    ASSERT_EQ(r.rc, SL_OK);
    ASSERT_TRUE(r.handshake_done);
    uint8_t seen[32], h[32];
    ASSERT_EQ(sl_conn_server_key(m.client, seen), SL_OK);
    EXPECT_EQ(hex(seen, 32), m.v["server_static_public"].get<std::string>());
    ASSERT_EQ(sl_conn_handshake_hash(m.client, h), SL_OK);
    EXPECT_EQ(hex(h, 32), m.v["handshake_hash"].get<std::string>());
    EXPECT_EQ(hex(take_output(m.client)), w[2]["bytes"].get<std::string>());  // the confirmation PING
    ASSERT_EQ(feed_all(m.server, unhex(w[2]["bytes"])).rc, SL_OK);
    EXPECT_EQ(hex(take_output(m.server)), w[3]["bytes"].get<std::string>());
    ASSERT_EQ(feed_all(m.client, unhex(w[3]["bytes"])).rc, SL_OK);
    const Bytes hello = unhex(w[4]["content"]);
    ASSERT_EQ(sl_conn_send(m.client, SL_MSG_DATA, hello.data(), hello.size()), SL_OK);
    EXPECT_EQ(hex(take_output(m.client)), w[4]["bytes"].get<std::string>());
    EXPECT_EQ(fp(unhex(m.v["server_static_public"])), m.v["fingerprint"].get<std::string>());
}

TEST(ServerKeyVectorTest, EveryMalformedCaseGivesItsError) {
    const nlohmann::json v = project_vectors("seclink_v1_server_key.json");
    for (const auto &c : v["malformed"]) {
        SCOPED_TRACE(c["name"].get<std::string>());
        const std::string expected = c.contains("expected_server_key") && !c["expected_server_key"].is_null()
                                         ? c["expected_server_key"].get<std::string>()
                                         : "";
        unsigned accepted = SL_MODES_ALL;
        if (c.contains("accepted_modes")) {
            accepted = 0;
            for (int mode : c["accepted_modes"]) accepted |= 1u << mode;
        }
        Mode2 m(expected, accepted);
        if (c["after"] == 1) {
            ASSERT_TRUE(feed_all(m.server, take_output(m.client)).handshake_done);
        }
        sl_conn *to = c["to"] == "client" ? m.client : m.server;
        (void)take_output(to);
        FeedResult r = feed_all(to, unhex(c["bytes"]));
        EXPECT_STREQ(sl_errname(r.rc), c["error"].get<std::string>().c_str());
        EXPECT_EQ(sl_conn_pending_size(to), 0u) << "nothing sent after a refusal";
        if (c.contains("server_modes")) {
            EXPECT_EQ(sl_conn_server_modes(m.client), 1u << SL_MODE_PSK);
        }
        uint8_t seen[32];
        if (c["error"] == "SERVER_KEY_CHANGED" || c["error"] == "SERVER_KEY_UNKNOWN") {
            ASSERT_EQ(sl_conn_server_key(m.client, seen), SL_OK) << "the key is there to show";
            EXPECT_EQ(hex(seen, 32), v["server_static_public"].get<std::string>());
        }
    }
}

TEST(ServerKeyTest, Mode1ClientsStillConnectToAServerWithAKey) {
    Pair p;
    uint8_t st[32] = {5};
    ASSERT_EQ(sl_conn_set_static_key(p.server, st), SL_OK);
    ASSERT_EQ(sl_conn_set_accepted_modes(p.server, SL_MODES_ALL), SL_OK);
    p.handshake();
    EXPECT_EQ(sl_conn_set_mode(p.server, SL_MODE_SERVER_KEY), SL_ESTATE);
    Pair q;
    EXPECT_EQ(sl_conn_set_mode(q.server, SL_MODE_SERVER_KEY), SL_EINVAL) << "a client's setting";
    EXPECT_EQ(sl_conn_set_mode(q.client, 5), SL_EINVAL);
    EXPECT_EQ(sl_conn_set_accepted_modes(q.server, 1u << 5), SL_EINVAL);
}

TEST(ServerKeyTest, FingerprintsAreBase32GroupsAndMatchLoosely) {
    const Bytes pub(32, 7);
    const std::string f = fp(pub);
    ASSERT_EQ(f.size(), SL_FINGERPRINT_CHARS);
    for (size_t i = 0; i < f.size(); ++i) {
        if (i % 5 == 4) {
            EXPECT_EQ(f[i], '-');
        } else {
            EXPECT_TRUE((f[i] >= 'A' && f[i] <= 'Z') || (f[i] >= '2' && f[i] <= '7')) << f;
        }
    }
    std::string loose;
    for (char c : f)
        if (c != '-') loose += static_cast<char>(std::tolower(c));
    EXPECT_EQ(sl_fingerprint_matches(loose.c_str(), pub.data()), 1);
    EXPECT_EQ(sl_fingerprint_matches((f.substr(0, 10) + " " + f.substr(10)).c_str(), pub.data()), 1);
    std::string wrong = f;
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    EXPECT_EQ(sl_fingerprint_matches(wrong.c_str(), pub.data()), 0);
    EXPECT_EQ(sl_fingerprint_matches(f.substr(0, 38).c_str(), pub.data()), 0);
    char small[39];
    EXPECT_EQ(sl_key_fingerprint(pub.data(), small, sizeof small), SL_ERANGE);
}

TEST(ServerKeyTest, KnownServersAddLookupAndRefuseAWritableFile) {
    char dir[] = "/tmp/seclink-known-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/sub/known_servers";
    const Bytes a(32, 1), b(32, 2);
    uint8_t got[32];
    unsigned line = 0;
    EXPECT_EQ(sl_known_servers_lookup(path.c_str(), "host:1", got, &line), SL_ESERVER_KEY_UNKNOWN);
    ASSERT_EQ(sl_known_servers_add(path.c_str(), "Host:1", a.data()), SL_OK);
    ASSERT_EQ(sl_known_servers_add(path.c_str(), "[::1]:2", b.data()), SL_OK);
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(sl_known_servers_lookup(path.c_str(), "HOST:1", got, &line), SL_OK);
    EXPECT_EQ(Bytes(got, got + 32), a);
    EXPECT_EQ(line, 1u);
    ASSERT_EQ(sl_known_servers_lookup(path.c_str(), "[::1]:2", got, &line), SL_OK);
    EXPECT_EQ(Bytes(got, got + 32), b);
    EXPECT_EQ(line, 2u);
    EXPECT_EQ(sl_known_servers_lookup(path.c_str(), "host:2", got, &line), SL_ESERVER_KEY_UNKNOWN);
    EXPECT_EQ(sl_known_servers_add(path.c_str(), "a b:1", a.data()), SL_EINVAL);
    ASSERT_EQ(chmod(path.c_str(), 0622), 0);
    EXPECT_EQ(sl_known_servers_lookup(path.c_str(), "host:1", got, &line), SL_EKEY_PERMISSIONS);
    EXPECT_EQ(sl_known_servers_add(path.c_str(), "x:1", a.data()), SL_EKEY_PERMISSIONS);
    std::remove(path.c_str());
    rmdir((std::string(dir) + "/sub").c_str());
    rmdir(dir);
}

TEST(ServerKeyTest, SessionAnswersAnUnacceptedModeWithTheModesFrame) {
    Bytes psk(32, 3);
    sl_server_config cfg;
    sl_server_config_init(&cfg);
    cfg.psk = psk.data();
    sl_policy *policy = nullptr;
    ASSERT_EQ(sl_policy_new(&policy, &cfg), SL_OK);  // no server key: psk only
    sl_conn *client = nullptr;
    ASSERT_EQ(sl_conn_new(&client, SL_CLIENT, psk.data()), SL_OK);
    ASSERT_EQ(sl_conn_set_mode(client, SL_MODE_SERVER_KEY), SL_OK);
    ASSERT_EQ(sl_conn_start(client), SL_OK);
    sl_session *s = nullptr;
    ASSERT_EQ(sl_session_new(&s, policy, "10.9.9.9:1", 0), SL_OK);
    const Bytes f1 = take_output(client);
    size_t used = 0, mlen = 0;
    const uint8_t *msg = nullptr;
    ASSERT_EQ(sl_session_feed(s, f1.data(), f1.size(), 0, &used, &msg, &mlen), SL_OK);
    EXPECT_EQ(sl_session_status(s), SL_SESSION_CLOSING);
    const uint8_t *out = nullptr;
    size_t n = 0;
    ASSERT_EQ(sl_session_pending(s, &out, &n), SL_OK);
    const nlohmann::json v = project_vectors("seclink_v1_server_key.json");
    EXPECT_EQ(hex(out, n), v["modes_frame_psk_only"].get<std::string>());
    EXPECT_EQ(feed_all(client, Bytes(out, out + n)).rc, SL_EMODE_REFUSED);
    EXPECT_EQ(sl_conn_server_modes(client), 1u << SL_MODE_PSK);
    sl_session_free(s);
    sl_conn_free(client);
    sl_policy_free(policy);
    cfg.modes = SL_MODES_ALL;  // mode 2 without a key: refused
    EXPECT_EQ(sl_policy_new(&policy, &cfg), SL_EINVAL);
    sl_policy_free(nullptr);
}
