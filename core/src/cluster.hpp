// cluster.hpp - chat rooms across servers (PROTOCOL.md 11.7): each server's Chat publishes what
// it says in a room to the NATS subject "seclink.chat.room.<ROOM>" and hands what other servers
// publish there to its own members. NATS core pub/sub: at-most-once, ordered per publisher.
#pragma once

#include <memory>
#include <string>

namespace seclink::detail {

class Chat;
class Policy;

class Cluster {
public:
    // Connects (in the background, retrying for ever) to `url`. *rc: SL_OK, SL_EINVAL (not a
    // NATS URL, or built without NATS), SL_ENOMEM.
    static std::unique_ptr<Cluster> open(Chat &chat, Policy &p, const std::string &url, int *rc);
    virtual ~Cluster() = default;
    // A line said in `room` here (called under Chat's mutex; never blocks on the network).
    virtual void publish(const std::string &room, const std::string &line) noexcept = 0;
};

}  // namespace seclink::detail
