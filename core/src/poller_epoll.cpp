// poller_epoll.cpp - the Poller on Linux epoll (level-triggered) with an eventfd to wake it: the
// default on Linux, and what the benchmark measures. One epoll_ctl per add/modify/remove and one
// epoll_wait per wait, exactly as the server did before it had a Poller.
#include "poller.hpp"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "seclink/seclink.h"

namespace seclink::detail {

static_assert(kReadable == uint32_t{EPOLLIN} && kWritable == uint32_t{EPOLLOUT} && kError == uint32_t{EPOLLERR} &&
                  kHangup == uint32_t{EPOLLHUP},
              "the Poller bits are epoll's, so events pass through untranslated");

namespace {
constexpr int kMaxEvents = 256;
}

Poller::~Poller() {
    if (epfd_ >= 0) close(epfd_);
    if (wake_rd_ >= 0) close(wake_rd_);
}

const char *Poller::backend() const noexcept { return "epoll"; }

int Poller::init() noexcept {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    wake_rd_ = wake_wr_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd_ < 0 || wake_rd_ < 0) return SL_ESOCKET;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the wake-up eventfd
    return epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_rd_, &ev) == 0 ? SL_OK : SL_ESOCKET;
}

bool Poller::add(int fd, uint32_t interest, void *tag) noexcept {
    epoll_event ev{};
    ev.events = interest;
    ev.data.ptr = tag;
    return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

bool Poller::modify(int fd, uint32_t interest, void *tag) noexcept {
    epoll_event ev{};
    ev.events = interest;  // 0: only hang-ups and errors (epoll always reports those)
    ev.data.ptr = tag;
    return epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) == 0;
}

void Poller::remove(int fd) noexcept { epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }
void Poller::forget(int) noexcept {}  // closing the (never duplicated) descriptor removes it

int Poller::wait(PollEvent *out, int cap, int timeout_ms) noexcept {
    epoll_event evs[kMaxEvents];
    int n = epoll_wait(epfd_, evs, cap < kMaxEvents ? cap : kMaxEvents, timeout_ms);
    for (int i = 0; i < n; ++i) {
        out[i].tag = evs[i].data.ptr;
        out[i].events = evs[i].events;
        if (out[i].tag == nullptr) drain_wake();
    }
    return n > 0 ? n : 0;
}

void Poller::drain_wake() noexcept {
    uint64_t v;
    while (read(wake_rd_, &v, sizeof v) > 0) {
    }
}

void Poller::wake() noexcept {
    uint64_t one = 1;
    ssize_t r = write(wake_wr_, &one, sizeof one);
    (void)r;  // a full counter already means "wake up"
}

}  // namespace seclink::detail
