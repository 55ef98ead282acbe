// The public Noise test vector for Noise_NNpsk0_25519_AESGCM_SHA256, reproduced byte for byte
// with its fixed ephemerals: handshake messages (with their non-empty payloads), the handshake
// hash, and the transport messages under the Split() keys.
#include "noise.hpp"
#include "test_util.hpp"

using namespace sltest;
namespace d = seclink::detail;

TEST(NoiseVectorTest, NNpsk0ReproducedByteForByte) {
    const nlohmann::json all = public_vectors("noise_nnpsk0_25519_aesgcm_sha256.json");
    int found = 0;
    for (const auto &v : all["vectors"]) {
        if (v["protocol_name"] != d::Handshake::kProtocolName) continue;
        ++found;
        const Bytes prologue = unhex(v["init_prologue"]), psk = unhex(v["init_psks"][0]);
        const Bytes ie = unhex(v["init_ephemeral"]), re = unhex(v["resp_ephemeral"]);
        d::Handshake init, resp;
        ASSERT_EQ(init.init(true, prologue.data(), prologue.size(), psk.data()), SL_OK);
        ASSERT_EQ(resp.init(false, unhex(v["resp_prologue"]).data(), prologue.size(),
                            unhex(v["resp_psks"][0]).data()),
                  SL_OK);
        ASSERT_EQ(init.set_ephemeral(ie.data()), SL_OK);
        ASSERT_EQ(resp.set_ephemeral(re.data()), SL_OK);
        const auto &msgs = v["messages"];
        ASSERT_GE(msgs.size(), 3u);
        for (size_t i = 0; i < 2; ++i) {
            d::Handshake &writer = i == 0 ? init : resp;
            d::Handshake &reader = i == 0 ? resp : init;
            const Bytes payload = unhex(msgs[i]["payload"]);
            uint8_t out[1200], back[1200];
            size_t len = 0, back_len = 0;
            ASSERT_EQ(writer.write_message(payload.data(), payload.size(), out, &len), SL_OK);
            EXPECT_EQ(hex(out, len), msgs[i]["ciphertext"].get<std::string>()) << "handshake message " << i;
            ASSERT_EQ(reader.read_message(out, len, back, &back_len), SL_OK);
            EXPECT_EQ(Bytes(back, back + back_len), payload);
        }
        uint8_t ik1[32], ik2[32], ih[32], rk1[32], rk2[32], rh[32];
        ASSERT_EQ(init.split(ik1, ik2, ih), SL_OK);
        ASSERT_EQ(resp.split(rk1, rk2, rh), SL_OK);
        EXPECT_EQ(hex(ih, 32), v["handshake_hash"].get<std::string>());
        EXPECT_EQ(hex(rh, 32), v["handshake_hash"].get<std::string>());
        EXPECT_EQ(hex(ik1, 32), hex(rk1, 32));
        EXPECT_EQ(hex(ik2, 32), hex(rk2, 32));
        // Transport: initiator -> responder with k1, then responder -> initiator with k2, ...
        d::Aead to_resp, to_init, from_init, from_resp;
        ASSERT_EQ(to_resp.init(ik1, true), SL_OK);
        ASSERT_EQ(from_init.init(rk1, false), SL_OK);
        ASSERT_EQ(to_init.init(rk2, true), SL_OK);
        ASSERT_EQ(from_resp.init(ik2, false), SL_OK);
        uint64_t n_i = 0, n_r = 0;
        for (size_t i = 2; i < msgs.size(); ++i) {
            const bool from_initiator = i % 2 == 0;
            const Bytes payload = unhex(msgs[i]["payload"]);
            uint64_t &n = from_initiator ? n_i : n_r;
            uint8_t iv[12];
            d::make_nonce(n++, iv);
            Bytes ct(payload.size() + 16), back(payload.size() + 1);
            ASSERT_EQ((from_initiator ? to_resp : to_init)
                          .seal(iv, nullptr, 0, payload.data(), payload.size(), nullptr, 0, ct.data(),
                                ct.data() + payload.size()),
                      SL_OK);
            EXPECT_EQ(hex(ct), msgs[i]["ciphertext"].get<std::string>()) << "transport message " << i;
            ASSERT_TRUE((from_initiator ? from_init : from_resp)
                            .open(iv, nullptr, 0, ct.data(), payload.size(), ct.data() + payload.size(),
                                  back.data()));
            EXPECT_EQ(Bytes(back.begin(), back.begin() + static_cast<long>(payload.size())), payload);
        }
    }
    EXPECT_EQ(found, 1) << "the NNpsk0 vector is missing from the vector file";
}
