// The header-only C++ wrapper: RAII, exceptions carrying sl_err codes, a full exchange.
#include "seclink/seclink.hpp"
#include "test_util.hpp"

TEST(CppWrapperTest, FullExchange) {
    seclink::Key psk{};
    psk.fill(3);
    seclink::Connection client(seclink::Role::Client, psk), server(seclink::Role::Server, psk);
    client.start();
    server.start();
    auto deliver = [](seclink::Connection &from, seclink::Connection &to) {
        std::vector<std::string> got;
        auto out = from.pending();
        std::vector<uint8_t> wire(out.begin(), out.end());
        from.consume(wire.size());
        seclink::Bytes in(wire);
        while (!in.empty()) {
            seclink::Event ev;
            in = in.subspan(to.feed(in, ev));
            if (ev.type == SL_EVENT_MESSAGE) got.emplace_back((ev.msg_type == SL_MSG_PING ? "PING:" : "") + std::string(ev.text()));
        }
        return got;
    };
    deliver(client, server);
    deliver(server, client);
    ASSERT_TRUE(client.established());
    EXPECT_EQ(client.handshake_hash(), server.handshake_hash());
    client.send(SL_MSG_DATA, "hello from C++");
    // The key-confirmation PING goes first, in the same write; its PONG is not delivered.
    EXPECT_EQ(deliver(client, server), (std::vector<std::string>{"PING:", "hello from C++"}));
    server.send(SL_MSG_DATA, "ACK");
    EXPECT_EQ(deliver(server, client), std::vector<std::string>{"ACK"});
}

TEST(CppWrapperTest, ErrorsCarryTheirCode) {
    seclink::Key a{}, b{};
    b.fill(1);
    seclink::Connection client(seclink::Role::Client, a), server(seclink::Role::Server, b);
    client.start();
    server.start();
    auto out = client.pending();
    seclink::Event ev;
    try {
        server.feed(out, ev);
        FAIL() << "wrong PSK accepted";
    } catch (const seclink::Error &e) {
        EXPECT_EQ(e.code(), SL_EHANDSHAKE_AUTH);
        EXPECT_STREQ(e.name(), "HANDSHAKE_AUTH");
        EXPECT_NE(std::string(e.what()).find("pre-shared keys"), std::string::npos);
    }
    EXPECT_THROW(seclink::load_key("/nonexistent/psk"), seclink::Error);
}

TEST(CppWrapperTest, MoveTransfersOwnership) {
    seclink::Key k{};
    seclink::Connection a(seclink::Role::Client, k);
    sl_conn *raw = a.get();
    seclink::Connection b(std::move(a));
    EXPECT_EQ(b.get(), raw);
    EXPECT_EQ(a.get(), nullptr);  // NOLINT(bugprone-use-after-move): checking the moved-from state
}

TEST(CppWrapperTest, RotationAndRekeying) {
    seclink::Key old_key{}, new_key{};
    new_key.fill(2);
    seclink::Connection client(seclink::Role::Client, new_key), server(seclink::Role::Server, old_key);
    server.set_psks({old_key, new_key});
    client.set_rekey_bytes(1);  // a KEY_UPDATE after every message
    client.start();
    server.start();
    seclink::Event ev;
    auto pump = [&ev](seclink::Connection &from, seclink::Connection &to) {
        auto out = from.pending();
        std::vector<uint8_t> bytes(out.begin(), out.end());
        from.consume(out.size());
        size_t pos = 0;
        while (pos < bytes.size()) pos += to.feed(seclink::Bytes(bytes.data() + pos, bytes.size() - pos), ev);
    };
    pump(client, server);
    EXPECT_EQ(server.psk_index(), 1);
    pump(server, client);
    client.send(SL_MSG_DATA, "one");
    client.rekey();
    client.send(SL_MSG_DATA, "two");
    pump(client, server);  // PING, KEY_UPDATE, "one", KEY_UPDATE, KEY_UPDATE, "two", KEY_UPDATE
    uint64_t sent = 0, received = 0;
    ASSERT_EQ(sl_conn_rekeys(client.get(), &sent, nullptr), SL_OK);
    ASSERT_EQ(sl_conn_rekeys(server.get(), nullptr, &received), SL_OK);
    EXPECT_EQ(sent, 4u);
    EXPECT_EQ(received, 4u);
    EXPECT_EQ(ev.type, SL_EVENT_NONE);  // the last frame was a KEY_UPDATE: no event
}
