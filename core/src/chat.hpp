// chat.hpp - chat rooms (PROTOCOL.md "Chat rooms"), part of the session layer: the server-wide
// rooms and names (one mutex), and each member's bounded queue of lines to deliver. Another
// session never touches a member's connection: it queues a line under the mutex and wakes the
// member's driver, which moves the line into that member's output on its own thread
// (Session::pump), as far as the member's output backpressure allows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "cluster.hpp"
#include "seclink/seclink.h"

namespace seclink::detail {

class Policy;
using Line = std::shared_ptr<const std::string>;  // one line shared by every member it goes to

// One session's part in the chat. The fields under "guarded" belong to Chat::mu_.
struct ChatMember {
    std::string peer;                 // for log lines
    std::string account;              // the session's user (key or password), "" for none
    sl_wake_fn wake = nullptr;        // set by the driver; called under Chat::mu_
    void *wake_ud = nullptr;
    // guarded by Chat::mu_
    std::string name, key, room;      // key: the name folded to lower case; room "" = in none
    bool entered = false;             // holds a name
    std::deque<Line> inbox;
    size_t inbox_charged = 0;         // bytes of the inbox charged to the memory budget
    bool woken = false;               // wake() called, pump not yet run
    size_t overflowed = 0;            // > 0: the queue overflowed with this many lines; dropped
    // the owner's thread only
    double tokens = 0;
    int64_t refilled = 0;
};

class Chat {
public:
    // With a cluster URL the rooms are shared with other servers through NATS (cluster.hpp);
    // if it cannot be used, ok() is false and error() says why.
    Chat(Policy &p, const std::string &cluster_url);
    ~Chat();
    bool ok() const noexcept { return error_ == SL_OK; }
    int error() const noexcept { return error_; }

    // The session is authenticated: it gets a guest name and joins "lobby".
    void enter(ChatMember &m, int64_t now);
    // The session ends: it leaves its room (the others are told) and gives its name back.
    void leave(ChatMember &m) noexcept;
    // One DATA message from the member. Returns false if it asked to /quit.
    bool line(ChatMember &m, const uint8_t *data, size_t len, int64_t now);
    // A line said in `room` on another server (any thread): to this server's members of it.
    void remote(const std::string &room, const std::string &line);
    // Takes lines queued for `m`, about `room` bytes of them (at least one if room > 0), and
    // gives back their budget charge; *overflowed > 0: it was too slow (that many lines lost).
    void take(ChatMember &m, size_t room, std::deque<Line> *out, size_t *overflowed);

    // Rules of PROTOCOL.md, exposed for tests.
    static bool valid_name(const std::string &s) noexcept;
    static bool valid_text(const uint8_t *data, size_t len) noexcept;

private:
    struct Room {
        std::map<std::string, ChatMember *> members;  // by key: /who lists them in order
    };
    // All under mu_.
    void push(ChatMember &to, const Line &line, const ChatMember *from);
    void tell(ChatMember &to, const std::string &text) { push(to, std::make_shared<const std::string>(text), &to); }
    void fail(ChatMember &to, int err, const std::string &detail);
    // To every member of `room` here, and to the other servers' members of it.
    void broadcast(const std::string &room, const std::string &text, const ChatMember *from);
    void local(const std::string &room, const Line &line, const ChatMember *from);
    bool join(ChatMember &m, const std::string &room);  // leaves the current room first
    void part(ChatMember &m, const char *why);          // leaves the current room, if any
    bool command(ChatMember &m, const std::string &cmd, const std::string &arg);

    Policy &p_;
    std::mutex mu_;
    std::map<std::string, Room> rooms_;
    std::map<std::string, ChatMember *> names_;  // by key
    uint64_t guests_ = 0;
    int error_ = SL_OK;
    std::unique_ptr<Cluster> cluster_;  // last: it goes first, before what its callbacks use
};

}  // namespace seclink::detail
