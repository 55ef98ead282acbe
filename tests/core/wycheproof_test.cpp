// Project Wycheproof vectors: AES-256-GCM (96-bit IV, 128-bit tag) through the engine's AEAD,
// every low-order X25519 public key (ZeroSharedSecret) through the handshake, HKDF-SHA256 and
// HMAC-SHA256 through the key derivation the Noise handshake uses.
#include <openssl/evp.h>

#include "crypto.hpp"
#include "engine.hpp"
#include "noise.hpp"
#include "test_util.hpp"

using namespace sltest;
namespace d = seclink::detail;

TEST(WycheproofAesGcmTest, EveryCaseAcceptedOrRejectedAsItSays) {
    const nlohmann::json all = public_vectors("wycheproof_aes_gcm_test.json");
    int valid = 0, invalid = 0;
    for (const auto &g : all["testGroups"]) {
        if (g["keySize"] != 256 || g["ivSize"] != 96 || g["tagSize"] != 128) continue;
        for (const auto &t : g["tests"]) {
            const Bytes key = unhex(t["key"]), iv = unhex(t["iv"]), aad = unhex(t["aad"]);
            const Bytes msg = unhex(t["msg"]), ct = unhex(t["ct"]), tag = unhex(t["tag"]);
            const std::string id = "tcId " + std::to_string(t["tcId"].get<int>());
            d::Aead dec;
            ASSERT_EQ(dec.init(key.data(), false), SL_OK);
            Bytes out(ct.size() + 1);
            const bool opened = dec.open(iv.data(), aad.data(), aad.size(), ct.data(), ct.size(), tag.data(), out.data());
            if (t["result"] == "invalid") {
                ++invalid;
                EXPECT_FALSE(opened) << id << " accepted: " << t["comment"];
                continue;
            }
            ++valid;
            ASSERT_TRUE(opened) << id << " rejected: " << t["comment"];
            EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<long>(ct.size())), msg) << id;
            d::Aead enc;
            ASSERT_EQ(enc.init(key.data(), true), SL_OK);
            Bytes sealed(msg.size() + 16);
            ASSERT_EQ(enc.seal(iv.data(), aad.data(), aad.size(), msg.data(), msg.size(), nullptr, 0, sealed.data(),
                               sealed.data() + msg.size()),
                      SL_OK);
            EXPECT_EQ(hex(sealed), hex(ct) + hex(tag)) << id;
        }
    }
    EXPECT_GT(valid, 20);
    EXPECT_GT(invalid, 20);
}

// One opening context takes Noise nonces (4 zero bytes + counter: only the counter is set per
// frame, after GCM's fixed field) and any other IV in any order: every vector still opens.
TEST(WycheproofAesGcmTest, OneContextOpensNoiseNoncesAndOtherIvsInAnyOrder) {
    const nlohmann::json all = public_vectors("wycheproof_aes_gcm_test.json");
    const Bytes key(32, 0x42);
    d::Aead enc, dec;
    ASSERT_EQ(enc.init(key.data(), true), SL_OK);
    ASSERT_EQ(dec.init(key.data(), false), SL_OK);
    int opened = 0, other = 0;
    for (const auto &g : all["testGroups"]) {
        if (g["ivSize"] != 96) continue;
        for (const auto &t : g["tests"]) {
            Bytes iv = unhex(t["iv"]);
            // Every vector's IV, then the same message under a Noise nonce made from its tail.
            for (int round = 0; round < 2; ++round) {
                if (round == 1) std::fill(iv.begin(), iv.begin() + 4, 0);
                else if (iv[0] == 0 && iv[1] == 0 && iv[2] == 0 && iv[3] == 0) continue;
                else ++other;
                const Bytes msg = unhex(t["msg"]);
                Bytes sealed(msg.size() + 16), out(msg.size() + 1);
                ASSERT_EQ(enc.seal(iv.data(), nullptr, 0, msg.data(), msg.size(), nullptr, 0, sealed.data(),
                                   sealed.data() + msg.size()),
                          SL_OK);
                ASSERT_TRUE(dec.open(iv.data(), nullptr, 0, sealed.data(), msg.size(), sealed.data() + msg.size(),
                                     out.data()))
                    << "tcId " << t["tcId"] << " round " << round;
                EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<long>(msg.size())), msg);
                ++opened;
            }
        }
    }
    EXPECT_GT(other, 20);
    EXPECT_GT(opened, 2 * other - 1);
}

// A sealing context counts nonces itself (GCM's TLS IV generation): consecutive nonces, across
// every byte carry, seal exactly as a fresh context given the same nonce does; a nonce out of
// sequence starts the count again.
TEST(WycheproofAesGcmTest, ASealerCountingNoncesMatchesAFreshContextForEach) {
    const Bytes key(32, 0x17), msg = {'c', 'o', 'u', 'n', 't'};
    auto seal = [&](d::Aead &a, const Bytes &iv) {
        Bytes out(msg.size() + 16);
        EXPECT_EQ(a.seal(iv.data(), nullptr, 0, msg.data(), 2, msg.data() + 2, msg.size() - 2, out.data(),
                         out.data() + msg.size()),
                  SL_OK);
        return hex(out);
    };
    auto nonce = [](uint64_t n, uint8_t prefix) {
        Bytes iv(d::kNonceLen);
        d::make_nonce(n, iv.data());
        iv[0] = prefix;
        return iv;
    };
    d::Aead counting;
    ASSERT_EQ(counting.init(key.data(), true), SL_OK);
    int sealed = 0;
    for (const uint8_t prefix : {uint8_t{0}, uint8_t{0x5a}}) {
        for (uint64_t start : {uint64_t{0}, uint64_t{254}, uint64_t{65534}, uint64_t{0xfffffffe},
                               uint64_t{0x00fffffffffffffe}, UINT64_MAX - 3}) {
            for (uint64_t n = start; n < start + 3; ++n) {
                d::Aead fresh;
                ASSERT_EQ(fresh.init(key.data(), true), SL_OK);
                const Bytes iv = nonce(n, prefix);
                ASSERT_EQ(seal(counting, iv), seal(fresh, iv)) << "nonce " << n << " prefix " << int(prefix);
                ++sealed;
            }
        }
    }
    EXPECT_EQ(sealed, 36);
}

namespace {

std::vector<Bytes> low_order_keys() {
    std::vector<Bytes> keys;
    const nlohmann::json all = public_vectors("wycheproof_x25519_test.json");
    for (const auto &g : all["testGroups"])
        for (const auto &t : g["tests"])
            for (const auto &f : t["flags"])
                if (f == "ZeroSharedSecret") keys.push_back(unhex(t["public"]));
    return keys;
}

}  // namespace

TEST(WycheproofX25519Test, ValidCasesDeriveTheExpectedSecret) {
    int n = 0;
    const nlohmann::json all = public_vectors("wycheproof_x25519_test.json");
    for (const auto &g : all["testGroups"])
        for (const auto &t : g["tests"]) {
            if (t["result"] != "valid") continue;
            d::X25519 k;
            ASSERT_EQ(k.set_private(unhex(t["private"]).data()), SL_OK);
            uint8_t out[32];
            ASSERT_EQ(k.derive(unhex(t["public"]).data(), out), SL_OK) << t["tcId"];
            EXPECT_EQ(hex(out, 32), t["shared"].get<std::string>()) << t["tcId"];
            ++n;
        }
    EXPECT_GT(n, 100);
}

TEST(WycheproofX25519Test, EveryZeroSharedSecretKeyAbortsTheServerHandshake) {
    const auto keys = low_order_keys();
    ASSERT_GT(keys.size(), 10u);
    const auto psk = key_of(7);
    for (const Bytes &pub : keys) {
        // A correct frame 1 carrying the low-order key: frame 1 involves no DH, so only the
        // server's "ee" (while answering) can notice, and it must abort rather than answer.
        d::SymmetricState ss;
        ASSERT_EQ(ss.init(d::Handshake::kProtocolName), SL_OK);
        ASSERT_EQ(ss.mix_hash(d::kPrologue, sizeof d::kPrologue), SL_OK);
        ASSERT_EQ(ss.mix_key_and_hash(psk.data(), psk.size()), SL_OK);
        ASSERT_EQ(ss.mix_hash(pub.data(), 32), SL_OK);
        ASSERT_EQ(ss.mix_key(pub.data(), 32), SL_OK);
        uint8_t tag[16];
        size_t len = 0;
        ASSERT_EQ(ss.encrypt_and_hash(nullptr, 0, tag, &len), SL_OK);
        Bytes f1 = {0, 0, 0, 53, 'S', 'L', 'N', 'K', 1};
        f1.insert(f1.end(), pub.begin(), pub.end());
        f1.insert(f1.end(), tag, tag + 16);
        Pair p(psk);
        p.start();
        FeedResult r = feed_all(p.server, f1);
        EXPECT_EQ(r.rc, SL_EWEAK_KEY) << hex(pub);
        EXPECT_FALSE(r.handshake_done);
        EXPECT_EQ(sl_conn_pending_size(p.server), 0u) << "no frame 2 for a weak key";
    }
}

TEST(WycheproofX25519Test, EveryZeroSharedSecretKeyAbortsTheClientHandshake) {
    const auto keys = low_order_keys();
    ASSERT_GT(keys.size(), 10u);
    for (const Bytes &pub : keys) {
        Pair p;
        p.start();
        Bytes f2 = {0, 0, 0, 48};
        f2.insert(f2.end(), pub.begin(), pub.end());
        f2.insert(f2.end(), 16, 0x42);  // never reached: the DH fails first
        FeedResult r = feed_all(p.client, f2);
        EXPECT_EQ(r.rc, SL_EWEAK_KEY) << hex(pub);
        EXPECT_FALSE(sl_conn_is_established(p.client));
    }
}

TEST(WycheproofHkdfTest, EveryCaseDerivesItsOutputOrIsRefused) {
    const nlohmann::json all = public_vectors("wycheproof_hkdf_sha256_test.json");
    size_t valid = 0, invalid = 0;
    for (const auto &g : all["testGroups"]) {
        for (const auto &t : g["tests"]) {
            SCOPED_TRACE(t["tcId"].get<int>());
            const Bytes ikm = unhex(t["ikm"]), salt = unhex(t["salt"]), info = unhex(t["info"]);
            const size_t size = t["size"];
            Bytes out(size);
            const int rc = d::hkdf_sha256(salt.data(), salt.size(), ikm.data(), ikm.size(), info.data(), info.size(),
                                          out.data(), out.size());
            if (t["result"] == "valid") {
                ASSERT_EQ(rc, SL_OK);
                EXPECT_EQ(hex(out), t["okm"].get<std::string>());
                ++valid;
            } else {
                EXPECT_NE(rc, SL_OK) << "an output over 255 hash lengths is refused (RFC 5869)";
                ++invalid;
            }
        }
    }
    EXPECT_EQ(valid + invalid, all["numberOfTests"].get<size_t>());
    EXPECT_GE(invalid, 1u);
}

// The Noise key derivation is HKDF whose extract step is HMAC-SHA256(salt, ikm): the Wycheproof
// HMAC cases (full 256-bit tags) checked through it. With an empty info, the first 32 output bytes
// are HMAC(PRK, 0x01) with PRK = HMAC(key, msg), the case's tag when the case is valid.
TEST(WycheproofHmacTest, TheHkdfExtractStepIsHmacSha256) {
    const nlohmann::json all = public_vectors("wycheproof_hmac_sha256_test.json");
    size_t checked = 0;
    for (const auto &g : all["testGroups"]) {
        if (g["tagSize"] != 256) continue;  // truncated tags say nothing about the full PRK
        for (const auto &t : g["tests"]) {
            SCOPED_TRACE(t["tcId"].get<int>());
            const Bytes key = unhex(t["key"]), msg = unhex(t["msg"]), tag = unhex(t["tag"]);
            uint8_t out[32], expect[32];
            size_t expect_len = 0;
            ASSERT_EQ(d::hkdf_sha256(key.data(), key.size(), msg.data(), msg.size(), nullptr, 0, out, sizeof out), SL_OK);
            const uint8_t one = 1;
            ASSERT_NE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, tag.data(), tag.size(), &one, 1, expect,
                                sizeof expect, &expect_len),
                      nullptr);
            ASSERT_EQ(expect_len, 32u);
            EXPECT_EQ(hex(out, 32) == hex(expect, 32), t["result"] == "valid") << t["comment"];
            ++checked;
        }
    }
    EXPECT_GE(checked, 80u);
}

TEST(WycheproofHkdfTest, TheNoiseHkdfIsHkdfSha256WithTheChainingKeyAsSalt) {
    uint8_t ck[32], ikm[40], two[64], three[96], plain[96];
    for (size_t i = 0; i < sizeof ck; ++i) ck[i] = static_cast<uint8_t>(i * 7);
    for (size_t i = 0; i < sizeof ikm; ++i) ikm[i] = static_cast<uint8_t>(200 - i);
    ASSERT_EQ(d::hkdf_sha256(ck, sizeof ck, ikm, sizeof ikm, nullptr, 0, plain, sizeof plain), SL_OK);
    ASSERT_EQ(d::hkdf(ck, ikm, sizeof ikm, two, 2), SL_OK);
    ASSERT_EQ(d::hkdf(ck, ikm, sizeof ikm, three, 3), SL_OK);
    EXPECT_EQ(hex(two, 64), hex(plain, 64));
    EXPECT_EQ(hex(three, 96), hex(plain, 96));
}
