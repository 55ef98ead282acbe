// cluster.cpp - chat rooms across servers through NATS (cluster.hpp).
#include "cluster.hpp"

#include "chat.hpp"
#include "seclink/seclink.h"
#include "session.hpp"

#ifdef SECLINK_HAVE_NATS
#include <nats/nats.h>

#include <atomic>
#include <mutex>

namespace seclink::detail {
namespace {

const char kPrefix[] = "seclink.chat.room.";

// What libnats' threads call back into. Never freed (a few bytes per cluster link): a callback
// already under way when the link closes must find it, and then finds chat == nullptr.
struct Shared {
    std::mutex mu;
    Chat *chat = nullptr;
    Policy *p = nullptr;
    std::string url;
    std::atomic<unsigned> lost{0};
};

class NatsCluster final : public Cluster {
public:
    NatsCluster(Chat &chat, Policy &p, std::string url) : sh_(new Shared) {
        sh_->chat = &chat;
        sh_->p = &p;
        sh_->url = std::move(url);
    }
    ~NatsCluster() override {
        {
            std::lock_guard<std::mutex> lock(sh_->mu);
            sh_->chat = nullptr;
            sh_->p = nullptr;
        }
        if (sub_ != nullptr) {
            natsSubscription_Unsubscribe(sub_);
            natsSubscription_Destroy(sub_);
        }
        if (nc_ != nullptr) {
            natsConnection_Close(nc_);
            natsConnection_Destroy(nc_);
        }
        if (opts_ != nullptr) natsOptions_Destroy(opts_);
    }

    int start() {
        natsStatus s = natsOptions_Create(&opts_);
        if (s == NATS_OK) s = natsOptions_SetURL(opts_, sh_->url.c_str());
        if (s == NATS_OK) s = natsOptions_SetNoEcho(opts_, true);      // our own lines are delivered here already
        if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts_, -1);  // the link recovers by itself
        if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts_, 250);
        if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(opts_, 8 * 1024 * 1024);
        if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts_, &on_down, sh_);
        if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts_, &on_up, sh_);
        if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(opts_, true, &on_up, sh_);
        if (s != NATS_OK) return s == NATS_NO_MEMORY ? SL_ENOMEM : SL_EINVAL;
        s = natsConnection_Connect(&nc_, opts_);
        if (s == NATS_OK) {
            on_up(nc_, sh_);
        } else if (s == NATS_NOT_YET_CONNECTED) {
            sh_->p->log(SL_LOG_WARN, "[WARN] cluster: no NATS server answers at " + sh_->url +
                                         " yet: rooms are local until one does");
        } else {
            return SL_EINVAL;
        }
        s = natsConnection_Subscribe(&sub_, nc_, "seclink.chat.room.*", &on_msg, sh_);
        return s == NATS_OK ? SL_OK : SL_EINVAL;
    }

    void publish(const std::string &room, const std::string &line) noexcept override {
        try {
            const std::string subject = kPrefix + room;
            natsStatus s = natsConnection_Publish(nc_, subject.c_str(), line.data(), static_cast<int>(line.size()));
            if (s != NATS_OK && sh_->lost.fetch_add(1) == 0)
                sh_->p->log(SL_LOG_WARN, std::string("[WARN] cluster: lines for other servers are being lost (") +
                                             natsStatus_GetText(s) + "); local delivery continues");
        } catch (...) {  // out of memory: the line stays local, as NATS itself may lose one
        }
    }

private:
    static void on_msg(natsConnection *, natsSubscription *, natsMsg *msg, void *ud) {
        auto *sh = static_cast<Shared *>(ud);
        try {
            const std::string subject = natsMsg_GetSubject(msg);
            const std::string line(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
            std::lock_guard<std::mutex> lock(sh->mu);
            if (sh->chat != nullptr && subject.size() > sizeof kPrefix - 1)
                sh->chat->remote(subject.substr(sizeof kPrefix - 1), line);
        } catch (...) {  // out of memory: this line is lost here, as NATS itself may lose one
        }
        natsMsg_Destroy(msg);
    }
    static void say(void *ud, int level, const std::string &what) {
        auto *sh = static_cast<Shared *>(ud);
        try {
            std::lock_guard<std::mutex> lock(sh->mu);
            if (sh->p != nullptr) sh->p->log(level, what + sh->url);
        } catch (...) {
        }
    }
    static void on_down(natsConnection *, void *ud) {
        say(ud, SL_LOG_WARN, "[WARN] cluster: rooms are local (reconnecting): lost the NATS link to ");
    }
    static void on_up(natsConnection *, void *ud) {
        static_cast<Shared *>(ud)->lost.store(0);
        say(ud, SL_LOG_INFO, "[INFO] cluster: rooms are shared with other servers through NATS at ");
    }

    Shared *sh_;
    natsOptions *opts_ = nullptr;
    natsConnection *nc_ = nullptr;
    natsSubscription *sub_ = nullptr;
};

}  // namespace

std::unique_ptr<Cluster> Cluster::open(Chat &chat, Policy &p, const std::string &url, int *rc) {
    if (url.rfind("nats://", 0) != 0 || url.size() <= 7 || url.find_first_of(" \t\r\n") != std::string::npos) {
        *rc = SL_EINVAL;  // (libnats would take "bogus" as a host name and retry it for ever)
        return nullptr;
    }
    auto c = std::make_unique<NatsCluster>(chat, p, url);
    *rc = c->start();
    if (*rc != SL_OK) return nullptr;
    return c;
}

}  // namespace seclink::detail

extern "C" int sl_chat_cluster_available(void) { return 1; }

#else  // built without libnats

namespace seclink::detail {

std::unique_ptr<Cluster> Cluster::open(Chat &, Policy &, const std::string &, int *rc) {
    *rc = SL_EINVAL;
    return nullptr;
}

}  // namespace seclink::detail

extern "C" int sl_chat_cluster_available(void) { return 0; }

#endif
