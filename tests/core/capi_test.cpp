// The C ABI's contracts: argument checks, out-params, error names, constants, version.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "test_util.hpp"

using namespace sltest;

TEST(CApiTest, NewSetsOutToNullOnError) {
    sl_conn *c = reinterpret_cast<sl_conn *>(0x1234);  // junk
    auto k = key_of(1);
    EXPECT_EQ(sl_conn_new(&c, SL_CLIENT, nullptr), SL_EINVAL);
    EXPECT_EQ(c, nullptr);
    EXPECT_EQ(sl_conn_new(nullptr, SL_CLIENT, k.data()), SL_EINVAL);
}

// Every sl_x_free() accepts NULL: in a child process, which must run on to a normal exit.
TEST(CApiTest, EveryFreeAcceptsNull) {
    EXPECT_EXIT(
        {
            sl_conn_free(nullptr);
            sl_server_free(nullptr);
            sl_policy_free(nullptr);
            sl_session_free(nullptr);
            sl_client_free(nullptr);
            std::fprintf(stderr, "all freed");
            std::exit(0);
        },
        ::testing::ExitedWithCode(0), "all freed");
}

TEST(CApiTest, NullConnectionIsInvalidEverywhere) {
    sl_event ev{};
    size_t used = 0;
    const uint8_t *p = nullptr;
    size_t n = 0;
    uint8_t h[32];
    EXPECT_EQ(sl_conn_start(nullptr), SL_EINVAL);
    EXPECT_EQ(sl_conn_feed(nullptr, nullptr, 0, &used, &ev), SL_EINVAL);
    EXPECT_EQ(sl_conn_feed_eof(nullptr), SL_EINVAL);
    EXPECT_EQ(sl_conn_send(nullptr, SL_MSG_DATA, nullptr, 0), SL_EINVAL);
    EXPECT_EQ(sl_conn_pending(nullptr, &p, &n), SL_EINVAL);
    EXPECT_EQ(sl_conn_consume(nullptr, 0), SL_EINVAL);
    EXPECT_EQ(sl_conn_pending_size(nullptr), 0u);
    EXPECT_EQ(sl_conn_is_established(nullptr), 0);
    EXPECT_EQ(sl_conn_is_closed(nullptr), 0);
    EXPECT_EQ(sl_conn_handshake_hash(nullptr, h), SL_EINVAL);
    EXPECT_EQ(sl_conn_set_max_message(nullptr, 1), SL_EINVAL);
    EXPECT_EQ(sl_conn_set_ephemeral_for_testing(nullptr, h), SL_EINVAL);
}

TEST(CApiTest, FeedChecksItsPointers) {
    Pair p;
    p.start();
    sl_event ev{};
    size_t used = 0;
    uint8_t b = 0;
    EXPECT_EQ(sl_conn_feed(p.server, nullptr, 1, &used, &ev), SL_EINVAL);
    EXPECT_EQ(sl_conn_feed(p.server, &b, 1, nullptr, &ev), SL_EINVAL);
    EXPECT_EQ(sl_conn_feed(p.server, &b, 1, &used, nullptr), SL_EINVAL);
    EXPECT_EQ(sl_conn_feed(p.server, nullptr, 0, &used, &ev), SL_OK);
}

// The error enum as the public header spells it (SL_EXXX = n) is what sl_errname() knows: each
// code has its enumerator's name, and no other code has one. Read from the header's text, so that
// an error added to the enum without a name (or a name without an enumerator) is caught.
TEST(CApiTest, EveryErrorOfTheHeaderHasItsNameAndAMessage) {
    std::ifstream in(SECLINK_PUBLIC_HEADER);
    ASSERT_TRUE(in) << SECLINK_PUBLIC_HEADER;
    const std::regex enumerator(R"(^\s+SL_E([A-Z_0-9]+) = ([0-9]+),?\s)");
    std::map<int, std::string> declared;
    bool in_enum = false;  // from SL_OK = 0 to the enum's closing brace
    for (std::string line; std::getline(in, line);) {
        if (line.find("SL_OK = 0,") != std::string::npos) in_enum = true;
        if (!line.empty() && line[0] == '}') in_enum = false;
        std::smatch m;
        if (in_enum && std::regex_search(line, m, enumerator)) {
            EXPECT_TRUE(declared.emplace(std::stoi(m[2]), m[1]).second) << line;
        }
    }
    ASSERT_GE(declared.size(), 20u) << "the header's error enum was not found";
    std::set<std::string> names;
    for (int e = 1; e < 256; ++e) {
        ASSERT_NE(sl_strerror(e), nullptr);
        auto it = declared.find(e);
        if (it == declared.end()) {
            EXPECT_STREQ(sl_errname(e), "UNKNOWN") << e;
            EXPECT_STREQ(sl_strerror(e), "unknown error") << e;
            continue;
        }
        EXPECT_EQ(sl_errname(e), it->second) << e;
        EXPECT_TRUE(names.insert(sl_errname(e)).second) << it->second;
        EXPECT_STRNE(sl_strerror(e), "unknown error") << it->second;
    }
    EXPECT_STREQ(sl_errname(SL_OK), "OK");
    EXPECT_STREQ(sl_errname(SL_EAUTH), "AUTH");
    EXPECT_STREQ(sl_errname(-1), "UNKNOWN");
    EXPECT_EQ(SL_EKEY_NOT_FILE, 36);  // explicit, never renumbered
    EXPECT_EQ(SL_EKEY_OWNER, 37);
    EXPECT_EQ(SL_EKEY_DIR, 38);
    EXPECT_EQ(SL_EADDRNOTAVAIL, 55);  // appended, never renumbered
    EXPECT_EQ(SL_EAFNOSUPPORT, 57);
}

TEST(CApiTest, EveryErrorHasACategoryTheProgramsExitWith) {
    EXPECT_EQ(sl_err_category(SL_OK), SL_CAT_OK);
    EXPECT_EQ(sl_err_category(SL_EADDRNOTAVAIL), SL_CAT_NETWORK);
    EXPECT_EQ(sl_err_category(SL_ETIMEDOUT), SL_CAT_NETWORK);
    EXPECT_EQ(sl_err_category(SL_EHANDSHAKE_AUTH), SL_CAT_HANDSHAKE);
    EXPECT_EQ(sl_err_category(SL_ETLS_TRUST), SL_CAT_TLS);
    EXPECT_EQ(sl_err_category(SL_EKEY_NOT_FOUND), SL_CAT_KEY);
    EXPECT_EQ(sl_err_category(SL_EBAD_COUNTER), SL_CAT_SESSION);
    EXPECT_EQ(sl_err_category(SL_EMSG_TOO_LARGE), SL_CAT_TOO_LARGE);
    EXPECT_EQ(sl_err_category(SL_ENOMEM), SL_CAT_INTERNAL);
    EXPECT_EQ(sl_err_category(-1), SL_CAT_INTERNAL);
}

TEST(CApiTest, ThePinParserTakesWhatTheFingerprintWrites) {
    const std::string hex(64, 'a');
    uint8_t out[32] = {};
    EXPECT_EQ(sl_tls_pin_parse(hex.c_str(), out), SL_OK);
    EXPECT_EQ(out[0], 0xaa);
    EXPECT_EQ(sl_tls_pin_parse(("AA:" + std::string(62, 'B')).c_str(), out), SL_OK);
    EXPECT_EQ(out[0], 0xaa);
    EXPECT_EQ(out[31], 0xbb);
    EXPECT_EQ(sl_tls_pin_parse(std::string(63, 'a').c_str(), nullptr), SL_EINVAL);
    EXPECT_EQ(sl_tls_pin_parse(std::string(65, 'a').c_str(), nullptr), SL_EINVAL);
    EXPECT_EQ(sl_tls_pin_parse((std::string(63, 'a') + "g").c_str(), nullptr), SL_EINVAL);
    EXPECT_EQ(sl_tls_pin_parse(nullptr, nullptr), SL_EINVAL);
}

// The messages reach C and Python API users, who have no command-line flags: no message names
// one (the programs add their own hints).
TEST(CApiTest, ErrorMessagesNameNoProgramFlags) {
    for (int e = 0; e < 64; ++e)
        EXPECT_EQ(std::string(sl_strerror(e)).find("--"), std::string::npos) << sl_errname(e) << ": " << sl_strerror(e);
}

// The constants against the wire itself: the project vectors' bytes (PROTOCOL.md), not the header.
TEST(CApiTest, ConstantFunctionsMatchTheWire) {
    const nlohmann::json v = project_vectors("seclink_v1.json");
    EXPECT_EQ(sl_key_bytes(), unhex(v["psk"]).size());
    EXPECT_EQ(sl_protocol_version(), unhex(v["prologue"]).back());
    size_t transport = 0;
    for (const auto &e : v["wire"]) {
        const Bytes b = unhex(e["bytes"]);
        ASSERT_GE(b.size(), sl_prefix_bytes());
        const size_t body = (size_t{b[0]} << 24) | (size_t{b[1]} << 16) | (size_t{b[2]} << 8) | b[3];
        EXPECT_EQ(b.size(), sl_prefix_bytes() + body) << "a 4-byte big-endian length in front of every frame";
        if (e["kind"] != "transport") continue;
        const Bytes content = unhex(e["content"]);
        EXPECT_EQ(b.size() - content.size(), sl_overhead_bytes()) << "prefix, IV, type and tag";
        EXPECT_EQ(sl_overhead_bytes(), sl_prefix_bytes() + sl_iv_bytes() + 1 + sl_tag_bytes());
        ++transport;
    }
    EXPECT_GE(transport, 4u);
    // The IV is 4 zero bytes and the 64-bit counter: the client's first frame has counter 0.
    const Bytes first = unhex(v["wire"][2]["bytes"]);
    EXPECT_EQ(hex(Bytes(first.begin() + 4, first.begin() + 4 + static_cast<std::ptrdiff_t>(sl_iv_bytes()))),
              "000000000000000000000000");
    EXPECT_EQ(sl_iv_bytes(), 12u);
    EXPECT_EQ(sl_tag_bytes(), 16u);  // AES-256-GCM's full tag
    EXPECT_EQ(sl_max_ping(), 64u);   // PROTOCOL.md 5
    EXPECT_EQ(sl_default_max_message(), 16u * 1024 * 1024);
}

// The version the library reports is the one the build system read (and gave the shared library,
// the package config and the Python package): CMake parses the header's text on its own.
TEST(CApiTest, VersionStringIsTheBuildsVersion) {
    EXPECT_STREQ(sl_version(), SECLINK_PROJECT_VERSION);
    EXPECT_TRUE(std::regex_match(std::string(sl_version()), std::regex(R"([0-9]+\.[0-9]+\.[0-9]+)")));
}
