// How messages are shown in logs (sl_format_message): nothing a peer sends may break a log line
// for a reader that splits lines the Unicode way, or change how the operator reads it.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "seclink/seclink.h"

namespace {

std::string show(const std::string &s) {
    char buf[300];
    sl_format_message(reinterpret_cast<const uint8_t *>(s.data()), s.size(), buf, sizeof buf);
    return buf;
}

// The UTF-8 encoding of code point `cp`.
std::string utf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xF0 | (cp >> 18));
        s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

}  // namespace

TEST(FormatTest, LineAndParagraphSeparatorsAreEscaped) {
    EXPECT_EQ(show(std::string("hi") + utf8(0x2028) + "[INFO] 10.0.0.1:1 handshake complete"),
              "hi\\u2028[INFO] 10.0.0.1:1 handshake complete");
    EXPECT_EQ(show(std::string("a") + utf8(0x2029) + "b"), "a\\u2029b");
}

TEST(FormatTest, BidiOverridesAndIsolatesAreEscaped) {
    for (uint32_t cp = 0x202A; cp <= 0x202E; ++cp) {
        char want[16];
        std::snprintf(want, sizeof want, "x\\u%04xy", cp);
        EXPECT_EQ(show(std::string("x") + utf8(cp) + "y"), want);
    }
    for (uint32_t cp = 0x2066; cp <= 0x2069; ++cp) {
        char want[16];
        std::snprintf(want, sizeof want, "x\\u%04xy", cp);
        EXPECT_EQ(show(std::string("x") + utf8(cp) + "y"), want);
    }
    EXPECT_EQ(show(std::string("abc") + utf8(0x061C)), "abc\\u061c") << "Arabic letter mark";
}

TEST(FormatTest, ZeroWidthCharactersAndTheBomAreEscaped) {
    for (uint32_t cp : {0x200Bu, 0x200Cu, 0x200Du, 0x200Eu, 0x200Fu, 0x2060u, 0x2064u, 0x00ADu}) {
        char want[16];
        std::snprintf(want, sizeof want, "\\u%04x", cp);
        EXPECT_EQ(show(utf8(cp)), want) << std::hex << cp;
    }
    EXPECT_EQ(show(utf8(0xFEFF) + "text"), "\\ufefftext");
}

TEST(FormatTest, SpacesOtherThanTheAsciiSpaceAreEscaped) {
    EXPECT_EQ(show("a b"), "a b");
    for (uint32_t cp : {0x00A0u, 0x1680u, 0x2000u, 0x200Au, 0x202Fu, 0x205Fu, 0x3000u}) {
        char want[16];
        std::snprintf(want, sizeof want, "\\u%04x", cp);
        EXPECT_EQ(show(utf8(cp)), want) << std::hex << cp;
    }
}

TEST(FormatTest, TagsPrivateUseAndNoncharactersAreEscapedAboveTheBmpToo) {
    EXPECT_EQ(show(utf8(0xE0001) + utf8(0xE0041)), "\\U000e0001\\U000e0041");
    EXPECT_EQ(show(utf8(0xE000)), "\\ue000");
    EXPECT_EQ(show(utf8(0x10FFFD)), "\\U0010fffd");
    EXPECT_EQ(show(utf8(0xFFFE) + utf8(0x1FFFF) + utf8(0xFDD0)), "\\ufffe\\U0001ffff\\ufdd0");
}

TEST(FormatTest, OrdinaryTextOfEveryScriptIsShownAsItIs) {
    const std::string text = "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xd8\xb3\xd9\x84\xd8\xa7\xd9\x85 "
                             "\xf0\x9f\x99\x82 tab\there back\\slash";
    EXPECT_EQ(show(text), text);
    EXPECT_EQ(show(utf8(0x1F600) + utf8(0x0301) + utf8(0xFFFD)), utf8(0x1F600) + utf8(0x0301) + utf8(0xFFFD));
}

TEST(FormatTest, TheLineBreaksOfATextFileAreWrittenAsEscapes) {
    EXPECT_EQ(show("one\ntwo\n"), "one\\ntwo\\n");
    EXPECT_EQ(show("h\xc3\xa9llo\r\nworld"), "h\xc3\xa9llo\\r\\nworld");
}

TEST(FormatTest, ControlCharactersStillMakeTheMessageBinary) {
    EXPECT_EQ(show("a\rb"), "<binary>");
    EXPECT_EQ(show("a\x1b[2Jb"), "<binary>");
    EXPECT_EQ(show(std::string("a") + utf8(0x85) + "b"), "<binary>") << "NEL, a C1 control";
}

TEST(FormatTest, TheCutCountsShownBytesAndNeverSplitsAnEscape) {
    // 100 U+2028 would be 600 bytes escaped: 33 fit in 200, then "...".
    std::string many;
    for (int i = 0; i < 100; ++i) many += utf8(0x2028);
    std::string want;
    for (int i = 0; i < 33; ++i) want += "\\u2028";
    EXPECT_EQ(show(many), want + "...");
    EXPECT_EQ(show(std::string(199, 'x') + utf8(0x202E)), std::string(199, 'x') + "...");
    EXPECT_EQ(show(std::string(194, 'x') + utf8(0x202E)), std::string(194, 'x') + "\\u202e");
}

TEST(FormatTest, EveryEscapedMessageFitsTheBufferTheProgramsUse) {
    std::string worst;
    for (int i = 0; i < 1000; ++i) worst += utf8(0xE0001);
    char buf[256];
    size_t n = sl_format_message(reinterpret_cast<const uint8_t *>(worst.data()), worst.size(), buf, sizeof buf);
    EXPECT_LE(n, 203u);
    EXPECT_EQ(std::string(buf).substr(n - 3), "...");
}

TEST(FormatTest, TraceDumpsEscapeThePlaintextToo) {
    const std::string content = std::string("a") + utf8(0x2028) + "b";
    uint8_t body[64] = {};
    sl_frame_info f{};
    f.sent = 0;
    f.kind = 3;
    f.body = body;
    f.body_len = 12 + 1 + content.size() + 16;
    f.msg_type = SL_MSG_DATA;
    f.content = reinterpret_cast<const uint8_t *>(content.data());
    f.content_len = content.size();
    char buf[2048];
    sl_format_frame(&f, "peer", buf, sizeof buf);
    const std::string dump = buf;
    EXPECT_NE(dump.find("DATA a\\u2028b"), std::string::npos) << dump;
    EXPECT_EQ(dump.find(utf8(0x2028)), std::string::npos) << dump;
}
