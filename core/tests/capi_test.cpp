// The C ABI's contracts: argument checks, out-params, error names, constants, version.
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

TEST(CApiTest, FreeAcceptsNull) { sl_conn_free(nullptr); }

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

TEST(CApiTest, EveryErrorHasADistinctNameAndAMessage) {
    std::set<std::string> names;
    int known = 0;
    for (int e = 0; e < 64; ++e) {
        std::string name = sl_errname(e);
        ASSERT_NE(sl_strerror(e), nullptr);
        if (name == "UNKNOWN") {
            EXPECT_STREQ(sl_strerror(e), "unknown error");
            continue;
        }
        ++known;
        EXPECT_TRUE(names.insert(name).second) << name;
        EXPECT_STRNE(sl_strerror(e), "unknown error") << name;
    }
    EXPECT_EQ(known, 49);
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

TEST(CApiTest, ConstantFunctionsMatchTheMacros) {
    EXPECT_EQ(sl_key_bytes(), SL_KEY_BYTES);
    EXPECT_EQ(sl_prefix_bytes(), SL_PREFIX_BYTES);
    EXPECT_EQ(sl_iv_bytes(), SL_IV_BYTES);
    EXPECT_EQ(sl_tag_bytes(), SL_TAG_BYTES);
    EXPECT_EQ(sl_overhead_bytes(), SL_PREFIX_BYTES + SL_IV_BYTES + SL_TYPE_BYTES + SL_TAG_BYTES);
    EXPECT_EQ(sl_max_ping(), 64u);
    EXPECT_EQ(sl_default_max_message(), 16u * 1024 * 1024);
    EXPECT_EQ(sl_protocol_version(), 1u);
}

TEST(CApiTest, VersionStringMatchesTheMacros) {
    EXPECT_EQ(std::string(sl_version()), std::to_string(SL_VERSION_MAJOR) + "." + std::to_string(SL_VERSION_MINOR) +
                                             "." + std::to_string(SL_VERSION_PATCH));
}
