// chat.cpp - chat rooms (chat.hpp, PROTOCOL.md "Chat rooms").
#include "chat.hpp"

#include <algorithm>
#include <cctype>
#include <exception>
#include <utility>

#include "session.hpp"

namespace seclink::detail {
namespace {

constexpr size_t kLineCost = 64;  // budget charge of a queued line beyond its bytes
const char kLobby[] = "lobby";

std::string folded(const std::string &s) {
    std::string k = s;
    for (char &c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return k;
}

// Code points that reorder or hide text (bidirectional controls) or break lines.
bool forbidden(uint32_t cp) {
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
           (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

}  // namespace

bool Chat::valid_name(const std::string &s) noexcept {
    if (s.empty() || s.size() > SL_CHAT_MAX_NAME) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    });
}

bool Chat::valid_text(const uint8_t *d, size_t len) noexcept {
    return len > 0 && len <= SL_CHAT_MAX_TEXT && sl_chat_text_ok(d, len);
}

}  // namespace seclink::detail

extern "C" int sl_chat_text_ok(const uint8_t *d, size_t len) {
    using seclink::detail::forbidden;
    if (d == nullptr && len != 0) return 0;
    for (size_t i = 0; i < len;) {
        const uint8_t b = d[i];
        uint32_t cp;
        size_t n;
        if (b < 0x80) { cp = b; n = 1; }
        else if (b >= 0xC2 && b <= 0xDF) { cp = b & 0x1F; n = 2; }
        else if (b >= 0xE0 && b <= 0xEF) { cp = b & 0x0F; n = 3; }
        else if (b >= 0xF0 && b <= 0xF4) { cp = b & 0x07; n = 4; }
        else return 0;
        if (i + n > len) return 0;
        for (size_t k = 1; k < n; ++k) {
            if ((d[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (d[i + k] & 0x3F);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        if (forbidden(cp)) return 0;
        i += n;
    }
    return 1;
}

namespace seclink::detail {

void Chat::push(ChatMember &to, const Line &line, const ChatMember *from) {
    if (to.overflowed > 0) {  // already dropped: its driver closes it
        ++to.overflowed;
        return;
    }
    const size_t cost = line->size() + kLineCost;
    if (to.inbox.size() >= p_.cfg.chat_queue || !p_.charge(static_cast<int64_t>(cost), p_.cfg.max_memory)) {
        to.overflowed = to.inbox.size() + 1;  // what it will never get
        p_.charge(-static_cast<int64_t>(to.inbox_charged), SIZE_MAX);
        to.inbox.clear();
        to.inbox_charged = 0;
    } else {
        to.inbox.push_back(line);
        to.inbox_charged += cost;
    }
    if (&to != from && !to.woken && to.wake != nullptr) {  // the sender's own lines: it pumps itself
        to.woken = true;
        to.wake(to.wake_ud);
    }
}

void Chat::fail(ChatMember &to, int err, const std::string &detail) {
    tell(to, std::string("! ") + sl_errname(err) + ": " + detail);
}

Chat::Chat(Policy &p, const std::string &cluster_url) : p_(p) {
    if (!cluster_url.empty()) cluster_ = Cluster::open(*this, p, cluster_url, &error_);
}

Chat::~Chat() { cluster_.reset(); }  // no callback from the bus after this

void Chat::broadcast(const std::string &room, const std::string &text, const ChatMember *from) {
    local(room, std::make_shared<const std::string>(text), from);
    if (cluster_) cluster_->publish(room, text);
}

void Chat::local(const std::string &room, const Line &line, const ChatMember *from) {
    auto it = rooms_.find(room);
    if (it == rooms_.end()) return;
    for (auto &[key, m] : it->second.members) push(*m, line, from);
}

void Chat::remote(const std::string &room, const std::string &line) {
    if (!valid_name(room) || !sl_chat_text_ok(reinterpret_cast<const uint8_t *>(line.data()), line.size())) return;
    const Line l = std::make_shared<const std::string>(line);
    std::lock_guard<std::mutex> lock(mu_);
    local(room, l, nullptr);
}

bool Chat::join(ChatMember &m, const std::string &room) {
    if (room == m.room) {
        tell(m, "* you are in " + room + " already");
        return true;
    }
    auto it = rooms_.find(room);
    if (it != rooms_.end() && it->second.members.size() >= p_.cfg.chat_members) {
        fail(m, SL_ECHAT_ROOM_FULL, "room " + room + " is full (" + std::to_string(p_.cfg.chat_members) + " members)");
        return false;
    }
    if (it == rooms_.end() && rooms_.size() >= p_.cfg.chat_rooms) {
        fail(m, SL_ECHAT_ROOMS, "the server has as many rooms as it allows (" + std::to_string(p_.cfg.chat_rooms) + ")");
        return false;
    }
    part(m, nullptr);
    rooms_[room].members[m.key] = &m;
    m.room = room;
    broadcast(room, "* " + m.name + " joined " + room, &m);
    if (p_.logs(SL_LOG_INFO)) p_.log(SL_LOG_INFO, "[INFO] " + m.peer + " " + m.name + " joined " + room);
    return true;
}

void Chat::part(ChatMember &m, const char *why) {
    if (m.room.empty()) return;
    auto it = rooms_.find(m.room);
    if (it != rooms_.end()) {
        it->second.members.erase(m.key);
        if (it->second.members.empty()) rooms_.erase(it);
        // (to the rest of the room here, and on other servers)
        broadcast(m.room, "* " + m.name + " left " + m.room + (why != nullptr ? std::string(" (") + why + ")" : ""), &m);
    }
    m.room.clear();
}

void Chat::enter(ChatMember &m, int64_t now) {
    std::lock_guard<std::mutex> lock(mu_);
    // A user's name is its account's (PROTOCOL.md 11.1), unless that is not a chat name or the
    // same user is here already; everyone else is a guest.
    if (!m.account.empty() && valid_name(m.account) && names_.count(folded(m.account)) == 0) {
        m.name = m.account;
        m.key = folded(m.account);
    } else {
        do {
            m.name = "guest" + std::to_string(++guests_);
            m.key = m.name;
        } while (names_.count(m.key) != 0);
    }
    names_[m.key] = &m;
    m.entered = true;
    m.tokens = p_.cfg.chat_rate;
    m.refilled = now;
    tell(m, "* you are " + m.name);
    join(m, kLobby);
}

void Chat::leave(ChatMember &m) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    try {
        part(m, m.overflowed > 0 ? "too slow" : nullptr);
    } catch (const std::exception &) {  // out of memory for the notice: leave anyway
        auto it = rooms_.find(m.room);
        if (it != rooms_.end()) {
            it->second.members.erase(m.key);
            if (it->second.members.empty()) rooms_.erase(it);
        }
        m.room.clear();
    }
    if (m.entered) names_.erase(m.key);
    m.entered = false;
    p_.charge(-static_cast<int64_t>(m.inbox_charged), SIZE_MAX);
    m.inbox.clear();
    m.inbox_charged = 0;
    m.wake = nullptr;
}

void Chat::take(ChatMember &m, size_t room, std::deque<Line> *out, size_t *overflowed) {
    std::lock_guard<std::mutex> lock(mu_);
    m.woken = false;
    *overflowed = m.overflowed;
    size_t taken = 0, released = 0;
    while (!m.inbox.empty() && taken < room) {
        taken += m.inbox.front()->size();
        released += m.inbox.front()->size() + kLineCost;
        out->push_back(std::move(m.inbox.front()));
        m.inbox.pop_front();
    }
    m.inbox_charged -= released;
    p_.charge(-static_cast<int64_t>(released), SIZE_MAX);
}

bool Chat::line(ChatMember &m, const uint8_t *data, size_t len, int64_t now) {
    std::lock_guard<std::mutex> lock(mu_);
    const double rate = p_.cfg.chat_rate;
    m.tokens = std::min(rate, m.tokens + double(now - m.refilled) * rate / 1000.0);
    m.refilled = now;
    if (m.tokens < 1.0) {
        fail(m, SL_ECHAT_RATE, "more than " + std::to_string(p_.cfg.chat_rate) + " lines a second: wait a moment");
        return true;
    }
    m.tokens -= 1.0;
    if (!valid_text(data, len)) {
        fail(m, SL_ECHAT_TEXT, sl_strerror(SL_ECHAT_TEXT));
        return true;
    }
    std::string text(reinterpret_cast<const char *>(data), len);
    if (text[0] == '/' && (text.size() == 1 || text[1] != '/')) {
        const size_t sp = text.find(' ');
        return command(m, text.substr(1, sp == std::string::npos ? std::string::npos : sp - 1),
                       sp == std::string::npos ? std::string() : text.substr(sp + 1));
    }
    if (text[0] == '/') text.erase(0, 1);  // "//x" says "/x"
    if (m.room.empty()) {
        fail(m, SL_ECHAT_COMMAND, "you are in no room: /join ROOM");
        return true;
    }
    broadcast(m.room, "[" + m.name + "] " + text, &m);
    return true;
}

bool Chat::command(ChatMember &m, const std::string &cmd, const std::string &arg) {
    if (cmd == "nick" && p_.has_accounts()) {
        fail(m, SL_ECHAT_COMMAND, "names are the users' accounts on this server: /nick is off");
    } else if (cmd == "nick" || cmd == "join") {
        if (arg.empty()) fail(m, SL_ECHAT_COMMAND, "usage: /" + cmd + (cmd == "nick" ? " NAME" : " ROOM"));
        else if (!valid_name(arg)) fail(m, SL_ECHAT_NAME, sl_strerror(SL_ECHAT_NAME));
        else if (cmd == "join") join(m, arg);
        else {
            const std::string key = folded(arg);
            auto it = names_.find(key);
            if (it != names_.end() && it->second != &m) {
                fail(m, SL_ECHAT_NAME_TAKEN, "the name " + arg + " is taken");
                return true;
            }
            const std::string old = m.name;
            names_.erase(m.key);
            names_[key] = &m;
            if (!m.room.empty()) {
                auto &members = rooms_[m.room].members;
                members.erase(m.key);
                members[key] = &m;
            }
            m.name = arg;
            m.key = key;
            if (m.room.empty()) tell(m, "* " + old + " is now " + arg);
            else broadcast(m.room, "* " + old + " is now " + arg, &m);
            if (p_.logs(SL_LOG_INFO)) p_.log(SL_LOG_INFO, "[INFO] " + m.peer + " " + old + " is now " + arg);
        }
    } else if (cmd == "who") {
        if (m.room.empty()) {
            fail(m, SL_ECHAT_COMMAND, "you are in no room: /join ROOM");
            return true;
        }
        std::string list = "* " + m.room + ":";
        for (auto &[key, member] : rooms_[m.room].members) list += " " + member->name;
        tell(m, list);
    } else if (cmd == "rooms") {
        std::string list = "* rooms:";
        for (auto &[name, room] : rooms_)
            list += std::string(list.back() == ':' ? " " : ", ") + name + " (" + std::to_string(room.members.size()) + ")";
        tell(m, list);
    } else if (cmd == "msg") {
        const size_t sp = arg.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 == arg.size()) {
            fail(m, SL_ECHAT_COMMAND, "usage: /msg NAME TEXT");
            return true;
        }
        const std::string to = arg.substr(0, sp);
        auto it = valid_name(to) ? names_.find(folded(to)) : names_.end();
        if (it == names_.end()) {
            fail(m, SL_ECHAT_NO_USER, "nobody here is called " + (valid_name(to) ? to : std::string("that")));
            return true;
        }
        const Line line = std::make_shared<const std::string>("[" + m.name + " -> " + it->second->name + "] " +
                                                              arg.substr(sp + 1));
        push(*it->second, line, &m);
        if (it->second != &m) push(m, line, &m);
    } else if (cmd == "quit") {
        return false;
    } else if (cmd == "help") {
        tell(m, "* commands: /nick NAME, /join ROOM, /who, /rooms, /msg NAME TEXT, /quit, /help; "
                "//TEXT says a line that starts with /");
    } else {
        fail(m, SL_ECHAT_COMMAND, "unknown command /" + cmd + " (/help lists them)");
    }
    return true;
}

}  // namespace seclink::detail
