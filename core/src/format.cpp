// format.cpp - how messages and frames are shown in logs. Shared by every program through the
// C ABI, so a C++ and a Python server print the same lines.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "seclink/seclink.h"

namespace {

constexpr size_t kMaxShown = 200;  // bytes of message text shown before "..."
constexpr size_t kMaxHex = 32;     // bytes of ciphertext/plaintext dumped before "..."

// Length of the valid UTF-8 sequence starting at p, its code point in *cp (0 if invalid or a
// control character).
size_t utf8_char(const uint8_t *p, size_t n, uint32_t *out) {
    const uint8_t c = p[0];
    *out = c;
    if (c < 0x80) return (c >= 0x20 && c != 0x7f) || c == '\t' ? 1 : 0;
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    uint32_t cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; ++i) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;  // overlong, surrogate
    if (cp >= 0x80 && cp < 0xA0) return 0;                                            // C1 controls
    *out = cp;
    return len;
}

// Printable to a terminal, yet able to forge or disguise a log line for its reader: a line or
// paragraph separator (Zl, Zp: str.splitlines() breaks there), a format character (Cf: bidi
// overrides and isolates, zero-width characters, the BOM, invisible tags), a space other than
// U+0020 (Zs), a private-use character (Co) or a noncharacter. The Unicode 15.1 lists, with
// the unassigned code points inside the format blocks; see README.md "Logs".
bool escaped(uint32_t cp) {
    struct Range {
        uint32_t lo, hi;
    };
    static constexpr Range kRanges[] = {
        {0x00A0, 0x00A0},   {0x00AD, 0x00AD},   {0x0600, 0x0605},   {0x061C, 0x061C},
        {0x06DD, 0x06DD},   {0x070F, 0x070F},   {0x0890, 0x0891},   {0x08E2, 0x08E2},
        {0x1680, 0x1680},   {0x180E, 0x180E},   {0x2000, 0x200F},   {0x2028, 0x202F},
        {0x205F, 0x206F},   {0x3000, 0x3000},   {0xE000, 0xF8FF},   {0xFDD0, 0xFDEF},
        {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD}, {0x110CD, 0x110CD},
        {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
        {0xE0020, 0xE007F}, {0xF0000, 0x10FFFF},
    };
    if (cp < 0xA0) return false;
    if ((cp & 0xFFFE) == 0xFFFE) return true;  // U+FFFE, U+FFFF, U+1FFFE ... noncharacters
    for (const Range &r : kRanges)
        if (cp <= r.hi) return cp >= r.lo;
    return false;
}

size_t copy_out(const std::string &s, char *buf, size_t cap) {
    if (buf == nullptr || cap == 0) return 0;
    size_t n = s.size() < cap - 1 ? s.size() : cap - 1;
    std::memcpy(buf, s.data(), n);
    buf[n] = '\0';
    return n;
}

std::string hex(const uint8_t *p, size_t n, size_t max = SIZE_MAX) {
    static const char *d = "0123456789abcdef";
    std::string s;
    size_t shown = n < max ? n : max;
    for (size_t i = 0; i < shown; ++i) {
        s += d[p[i] >> 4];
        s += d[p[i] & 15];
    }
    if (shown < n) s += "...";
    return s;
}

// At most kMaxShown bytes of text (then "..."), each escaped() character written as \uXXXX
// (\UXXXXXXXX above U+FFFF) and never cut inside, line breaks as \n and \r; "<binary>" for
// anything else that is not printable UTF-8, so a log line is always exactly one line whatever
// the peer sent.
std::string message_text(const uint8_t *data, size_t len) {
    if (len == 0) return "<empty>";
    std::string s;
    bool cut = false;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        // A text file's line breaks (LF, CRLF) are text, written \n and \r so that the log line stays
        // one line; a lone CR (which would overwrite the line on a terminal) is not.
        const bool line_break = data[i] == '\n' || (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n');
        const size_t c = line_break ? 1 : utf8_char(data + i, len - i, &cp);
        if (c == 0) return "<binary>";
        if (!cut) {
            char esc[16];
            const char *piece = reinterpret_cast<const char *>(data + i);
            size_t n = c;
            if (line_break) {
                piece = data[i] == '\n' ? "\\n" : "\\r";
                n = 2;
            } else if (escaped(cp)) {
                n = static_cast<size_t>(std::snprintf(esc, sizeof esc, cp > 0xFFFF ? "\\U%08x" : "\\u%04x", cp));
                piece = esc;
            }
            if (s.size() + n <= kMaxShown) s.append(piece, n);
            else cut = true;
        }
        i += c;
    }
    if (cut) s += "...";
    return s;
}

const char *type_name(int t) {
    switch (t) {
    case SL_MSG_DATA: return "DATA";
    case SL_MSG_CLOSE: return "CLOSE";
    case SL_MSG_PING: return "PING";
    case SL_MSG_PONG: return "PONG";
    case SL_MSG_EOF: return "EOF";
    case SL_MSG_FILE_PUT: return "FILE_PUT";
    case SL_MSG_FILE_GET: return "FILE_GET";
    case SL_MSG_FILE_READY: return "FILE_READY";
    case SL_MSG_FILE_INFO: return "FILE_INFO";
    case SL_MSG_FILE_DATA: return "FILE_DATA";
    case SL_MSG_FILE_READ: return "FILE_READ";
    case SL_MSG_FILE_END: return "FILE_END";
    case SL_MSG_FILE_DONE: return "FILE_DONE";
    case SL_MSG_FILE_ERROR: return "FILE_ERROR";
    case SL_MSG_KEY_UPDATE: return "KEY_UPDATE";
    case SL_MSG_AUTH: return "AUTH";
    default: return "?";
    }
}

std::string row(const char *label, const std::string &value, const std::string &note) {
    char line[64];
    std::snprintf(line, sizeof line, "\n        %-7s ", label);
    std::string s = line + value;
    if (!note.empty()) s += (value.size() < 40 ? std::string(40 - value.size(), ' ') : "  ") + note;
    return s;
}

}  // namespace

extern "C" size_t sl_format_message(const uint8_t *data, size_t len, char *buf, size_t cap) {
    try {
        return copy_out(data == nullptr && len != 0 ? "<binary>" : message_text(data, len), buf, cap);
    } catch (...) {
        return copy_out("", buf, cap);
    }
}

extern "C" size_t sl_format_frame(const sl_frame_info *f, const char *peer, char *buf, size_t cap) {
    if (f == nullptr || f->body == nullptr) return copy_out("", buf, cap);
    try {
        const uint8_t *b = f->body;
        const size_t n = f->body_len;
        const uint8_t prefix[4] = {static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
                                   static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
        const char *kind = f->kind == 1   ? "handshake frame 1"
                           : f->kind == 2 ? "handshake frame 2"
                           : f->kind == 4 ? "handshake frame 3"
                                          : "transport frame";
        std::string s = std::string("[TRACE] ") + (peer ? peer : "peer") + (f->sent ? " -> sent " : " <- received ") +
                        kind + ", " + std::to_string(n + 4) + " bytes on the wire";
        s += row("length", hex(prefix, 4), std::to_string(n) + " bytes follow (big-endian)");
        if (f->kind == 1 && n >= 53) {
            s += row("magic", hex(b, 5), "\"SLNK\", version " + std::to_string(b[4]) + " (mode " + sl_mode_name(b[4]) + ")");
            s += row("e.pub", hex(b + 5, 32), "client's ephemeral X25519 public key");
            s += row("tag", hex(b + 37, n - 37), "encrypted empty payload: proves the PSK");
        } else if (f->kind == 2 && n >= 48) {
            s += row("e.pub", hex(b, 32), "server's ephemeral X25519 public key");
            if (n >= 96) {  // modes 2 and 3 (PROTOCOL.md 14, 12)
                s += row("s", hex(b + 32, 48), "server's static public key, encrypted");
                s += row("tag", hex(b + 80, n - 80), "encrypted empty payload: proves the server's keys");
            } else {
                s += row("tag", hex(b + 32, n - 32), "encrypted empty payload: proves the PSK + DH");
            }
        } else if (f->kind == 4 && n >= 64) {
            s += row("s", hex(b, 48), "client's static public key (its identity), encrypted");
            s += row("tag", hex(b + 48, n - 48), "encrypted empty payload: proves the PSK + the client's key");
        } else if (f->kind == 3 && n >= 29) {
            const size_t ct = n - 12 - 16;
            s += row("iv", hex(b, 12), "counter " + std::to_string(f->counter));
            s += row("cipher", hex(b + 12, ct, kMaxHex), "AES-256-GCM ciphertext, " + std::to_string(ct) + " bytes");
            s += row("tag", hex(b + n - 16, 16), "GCM tag: integrity of iv + ciphertext");
            const uint8_t type = static_cast<uint8_t>(f->msg_type);
            std::string plain = hex(&type, 1) + " " + hex(f->content, f->content_len, kMaxHex - 1);
            s += row("plain", plain,
                     std::string(type_name(f->msg_type)) + " " + message_text(f->content, f->content_len));
        }
        return copy_out(s, buf, cap);
    } catch (...) {
        return copy_out("", buf, cap);
    }
}
