// tests/vectors/seclink_v1.json: a complete connection with fixed PSK and ephemerals as
// the exact bytes on the wire, and malformed frames with the error each must produce. The same
// file is checked by the independent Python reference implementation.
#include "test_util.hpp"

using namespace sltest;

namespace {

int msg_type(const std::string &name) {
    if (name == "DATA") return SL_MSG_DATA;
    if (name == "CLOSE") return SL_MSG_CLOSE;
    if (name == "PING") return SL_MSG_PING;
    if (name == "PONG") return SL_MSG_PONG;
    ADD_FAILURE() << "unknown type in vector file: " << name;
    return 0;
}

// Both sides with the vector's fixed secrets; replays wire entries, checking every byte.
struct VectorSession {
    const nlohmann::json &v;
    sl_conn *client = nullptr, *server = nullptr;

    const char *section;
    Bytes queued[2];  // per sender (0 client, 1 server): frames it queued by itself, not yet played

    explicit VectorSession(const nlohmann::json &vec, const char *sec = "wire") : v(vec), section(sec) {
        const Bytes psk = unhex(v["psk"]), ce = unhex(v["client_ephemeral"]), se = unhex(v["server_ephemeral"]);
        EXPECT_EQ(sl_conn_new(&client, SL_CLIENT, psk.data()), SL_OK);
        EXPECT_EQ(sl_conn_new(&server, SL_SERVER, psk.data()), SL_OK);
        EXPECT_EQ(sl_conn_set_ephemeral_for_testing(client, ce.data()), SL_OK);
        EXPECT_EQ(sl_conn_set_ephemeral_for_testing(server, se.data()), SL_OK);
        // The `wire` entries predate key confirmation (PROTOCOL.md 4.1): their client sends
        // its first message without the PING, which servers still accept (it is small).
        if (std::string(section) == "wire") {
            EXPECT_EQ(sl_conn_set_key_confirmation(client, 0), SL_OK);
        }
        EXPECT_EQ(sl_conn_set_max_message(client, v["max_message"].get<size_t>()), SL_OK);
        EXPECT_EQ(sl_conn_set_max_message(server, v["max_message"].get<size_t>()), SL_OK);
        EXPECT_EQ(sl_conn_start(client), SL_OK);
        EXPECT_EQ(sl_conn_start(server), SL_OK);
    }
    ~VectorSession() {
        sl_conn_free(client);
        sl_conn_free(server);
    }

    // Produces entry i on its sender (automatic replies such as frame 2 and PONG are already
    // pending; anything else is sent), compares the bytes, delivers them to the receiver.
    void play(size_t i) {
        const auto &e = v[section][i];
        const bool from_client = e["from"] == "client";
        sl_conn *tx = from_client ? client : server, *rx = from_client ? server : client;
        Bytes &q = queued[from_client ? 0 : 1];
        Bytes more = take_output(tx);
        q.insert(q.end(), more.begin(), more.end());
        if (q.empty()) {
            ASSERT_EQ(e["kind"], "transport") << "entry " << i;
            const Bytes content = unhex(e["content"]);
            ASSERT_EQ(sl_conn_send(tx, msg_type(e["type"]), content.data(), content.size()), SL_OK);
            q = take_output(tx);
        }
        const Bytes want = unhex(e["bytes"]);
        ASSERT_GE(q.size(), want.size()) << section << " entry " << i;
        const Bytes out(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(want.size()));
        q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(want.size()));
        ASSERT_EQ(hex(out), e["bytes"].get<std::string>()) << section << " entry " << i << " (" << e["kind"] << ")";
        FeedResult r = feed_all(rx, out);
        ASSERT_EQ(r.rc, SL_OK) << "entry " << i;
        if (e.value("delivered", true) == false) {
            EXPECT_TRUE(r.msgs.empty()) << "the PONG to the key-confirmation PING is not delivered";
        } else if (e["kind"] == "transport") {
            ASSERT_EQ(r.msgs.size(), 1u);
            EXPECT_EQ(r.msgs[0].type, msg_type(e["type"]));
            EXPECT_EQ(hex(r.msgs[0].content), e["content"].get<std::string>());
        } else {
            EXPECT_TRUE(r.handshake_done) << "each handshake frame completes the handshake for its receiver";
        }
    }
};

}  // namespace

TEST(ProjectVectorTest, WholeConnectionReproducedByteForByte) {
    const nlohmann::json v = project_vectors("seclink_v1.json");
    ASSERT_EQ(v["protocol"], "seclink/1");
    VectorSession s(v);
    for (size_t i = 0; i < v["wire"].size(); ++i) {
        s.play(i);
        if (::testing::Test::HasFatalFailure()) return;
    }
    uint8_t hc[32], hs[32];
    ASSERT_EQ(sl_conn_handshake_hash(s.client, hc), SL_OK);
    ASSERT_EQ(sl_conn_handshake_hash(s.server, hs), SL_OK);
    EXPECT_EQ(hex(hc, 32), v["handshake_hash"].get<std::string>());
    EXPECT_EQ(hex(hs, 32), v["handshake_hash"].get<std::string>());
    EXPECT_GE(v["wire"].size(), 8u);
}

TEST(ProjectVectorTest, KeyConfirmedConnectionReproducedByteForByte) {
    const nlohmann::json v = project_vectors("seclink_v1.json");
    VectorSession s(v, "confirmed_wire");
    for (size_t i = 0; i < v["confirmed_wire"].size(); ++i) {
        s.play(i);
        if (::testing::Test::HasFatalFailure()) return;
    }
    EXPECT_EQ(v["confirmed_wire"][2]["type"], "PING");
    EXPECT_EQ(v["confirmed_wire"][3]["delivered"], false);
    EXPECT_TRUE(sl_conn_peer_confirmed(s.server));
}

class MalformedTest : public ::testing::TestWithParam<size_t> {};  // param: feed chunk size (0 = all)

TEST_P(MalformedTest, EveryCaseGivesItsError) {
    const nlohmann::json v = project_vectors("seclink_v1.json");
    ASSERT_GE(v["malformed"].size(), 20u);
    for (const auto &m : v["malformed"]) {
        SCOPED_TRACE(m["name"].get<std::string>());
        VectorSession s(v);
        const size_t after = m["after"];
        for (size_t i = 0; i < after; ++i) {
            s.play(i);
            if (::testing::Test::HasFatalFailure()) return;
        }
        sl_conn *to = m["to"] == "client" ? s.client : s.server;
        const size_t queued = sl_conn_pending_size(to);
        FeedResult r = feed_all(to, unhex(m["bytes"]), GetParam());
        int rc = r.rc;
        if (m.value("eof", false)) {
            EXPECT_EQ(rc, SL_OK);
            rc = sl_conn_feed_eof(to);
        }
        EXPECT_STREQ(sl_errname(rc), m["error"].get<std::string>().c_str());
        EXPECT_TRUE(r.msgs.empty()) << "plaintext released from a malformed frame";
        EXPECT_EQ(sl_conn_pending_size(to), queued) << "nothing is queued in answer to a malformed frame";
    }
}

INSTANTIATE_TEST_SUITE_P(ProjectVectorTest, MalformedTest, ::testing::Values(size_t{0}, size_t{1}, size_t{5}),
                         [](const auto &p) { return p.param == 0 ? std::string("Whole") : "Chunks" + std::to_string(p.param); });
