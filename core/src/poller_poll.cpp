// poller_poll.cpp - the Poller on POSIX poll() with a self-pipe to wake it: builds and runs on
// any POSIX system (macOS, the BSDs, Linux with SECLINK_POLLER=poll). poll() is level-triggered
// and always reports POLLHUP, POLLERR and POLLNVAL, whatever was asked, so the server behaves as
// on epoll. The cost is O(descriptors) per wait, where epoll's is O(ready ones): fine for a
// class's server, not what the benchmark measures.
#include "poller.hpp"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <new>

#include "seclink/seclink.h"

namespace seclink::detail {

namespace {

short to_poll(uint32_t interest) noexcept {
    return static_cast<short>(((interest & kReadable) != 0 ? POLLIN : 0) | ((interest & kWritable) != 0 ? POLLOUT : 0));
}

uint32_t from_poll(short revents) noexcept {
    uint32_t e = 0;
    if ((revents & POLLIN) != 0) e |= kReadable;
    if ((revents & POLLOUT) != 0) e |= kWritable;
    if ((revents & (POLLERR | POLLNVAL)) != 0) e |= kError;
    if ((revents & POLLHUP) != 0) e |= kHangup;
    return e;
}

bool nonblocking_cloexec(int fd) noexcept {
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) == 0;
}

}  // namespace

Poller::~Poller() {
    if (wake_rd_ >= 0) close(wake_rd_);
    if (wake_wr_ >= 0) close(wake_wr_);
}

const char *Poller::backend() const noexcept { return "poll"; }

int Poller::init() noexcept {
    int p[2];
    if (pipe(p) != 0) return SL_ESOCKET;
    wake_rd_ = p[0];
    wake_wr_ = p[1];
    if (!nonblocking_cloexec(wake_rd_) || !nonblocking_cloexec(wake_wr_)) return SL_ESOCKET;
    // The wake-up pipe is fds_[0], under tag nullptr.
    return add(wake_rd_, kReadable, nullptr) ? SL_OK : SL_ENOMEM;
}

bool Poller::add(int fd, uint32_t interest, void *tag) noexcept {
    if (fd < 0) return false;
    const auto ufd = static_cast<size_t>(fd);
    try {
        if (ufd >= slot_.size()) slot_.resize(ufd + 1, -1);
        if (slot_[ufd] >= 0) {
            errno = EEXIST;
            return false;
        }
        fds_.reserve(fds_.size() + 1);
        tags_.reserve(tags_.size() + 1);
    } catch (...) {  // std::bad_alloc: refused like a full epoll set
        errno = ENOMEM;
        return false;
    }
    slot_[ufd] = static_cast<int>(fds_.size());
    fds_.push_back(pollfd{fd, to_poll(interest), 0});  // cannot throw: reserved
    tags_.push_back(tag);
    return true;
}

bool Poller::modify(int fd, uint32_t interest, void *tag) noexcept {
    const auto ufd = static_cast<size_t>(fd);
    if (fd < 0 || ufd >= slot_.size() || slot_[ufd] < 0) {
        errno = ENOENT;
        return false;
    }
    const auto i = static_cast<size_t>(slot_[ufd]);
    fds_[i].events = to_poll(interest);  // 0: poll() still reports POLLHUP and POLLERR
    tags_[i] = tag;
    return true;
}

void Poller::forget(int fd) noexcept { remove(fd); }

void Poller::remove(int fd) noexcept {
    const auto ufd = static_cast<size_t>(fd);
    if (fd < 0 || ufd >= slot_.size() || slot_[ufd] < 0) return;
    const auto i = static_cast<size_t>(slot_[ufd]);
    const size_t last = fds_.size() - 1;
    if (i != last) {  // the last slot takes the removed one's place
        fds_[i] = fds_[last];
        tags_[i] = tags_[last];
        slot_[static_cast<size_t>(fds_[i].fd)] = static_cast<int>(i);
    }
    fds_.pop_back();
    tags_.pop_back();
    slot_[ufd] = -1;
}

int Poller::wait(PollEvent *out, int cap, int timeout_ms) noexcept {
    int ready = poll(fds_.data(), static_cast<nfds_t>(fds_.size()), timeout_ms);
    if (ready <= 0 || cap <= 0) return 0;
    // More ready descriptors than `cap`: the rest stay ready (level-triggered) and are reported
    // first next time, so a busy prefix of the set cannot starve the others.
    const size_t n = fds_.size();
    int got = 0;
    size_t i = start_ < n ? start_ : 0;
    for (size_t seen = 0; seen < n && got < cap && ready > 0; ++seen, i = i + 1 < n ? i + 1 : 0) {
        const short re = fds_[i].revents;
        if (re == 0) continue;
        --ready;
        out[got].tag = tags_[i];
        out[got].events = from_poll(re);
        if (tags_[i] == nullptr) drain_wake();
        ++got;
    }
    start_ = i;
    return got;
}

void Poller::drain_wake() noexcept {
    char buf[64];
    while (read(wake_rd_, buf, sizeof buf) > 0) {
    }
}

void Poller::wake() noexcept {
    const char one = 1;
    ssize_t r = write(wake_wr_, &one, sizeof one);
    (void)r;  // a full pipe already means "wake up"
}

}  // namespace seclink::detail
