// poller.hpp - the readiness interface the native server's workers wait on, with one
// implementation per backend chosen at build time (CMake SECLINK_POLLER): epoll on Linux (the
// default there), poll() on any POSIX system (the default elsewhere, and what `make test-poll`
// forces on Linux). One Poller per worker thread; it is used by that thread only, but for wake().
//
// Level-triggered, whatever the backend: a descriptor that is still readable (or writable, if
// asked) is reported again by the next wait(). The server relies on that: it stops reading a
// session by dropping read interest and resumes by asking again, without re-reading anything.
// Hang-ups and errors are reported even with interest 0, as epoll and poll() both do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(SECLINK_POLLER_POLL)
#include <poll.h>
#endif

namespace seclink::detail {

// Interest and readiness bits (the values are epoll's and, on Linux, poll()'s; each backend
// checks or translates them).
inline constexpr uint32_t kReadable = 0x001;
inline constexpr uint32_t kWritable = 0x004;
inline constexpr uint32_t kError = 0x008;   // reported, never asked for
inline constexpr uint32_t kHangup = 0x010;  // reported, never asked for

struct PollEvent {
    void *tag;        // what add() was given; nullptr: the poller was woken (wake())
    uint32_t events;  // kReadable | kWritable | kError | kHangup
};

class Poller {
public:
    Poller() = default;
    ~Poller();
    Poller(const Poller &) = delete;
    Poller &operator=(const Poller &) = delete;

    const char *backend() const noexcept;  // "epoll", "poll"

    // Creates the backend and its wake-up descriptor. SL_OK, or SL_ESOCKET (errno set).
    int init() noexcept;

    // Watches `fd` for `interest` (kReadable and/or kWritable, or 0 for hang-ups and errors
    // only); its events come back with `tag`, which must not be nullptr. false on failure.
    bool add(int fd, uint32_t interest, void *tag) noexcept;
    bool modify(int fd, uint32_t interest, void *tag) noexcept;
    // Stops watching `fd`, which stays open.
    void remove(int fd) noexcept;
    // Right before `fd` is closed: epoll drops a closed descriptor by itself (no system call),
    // poll() needs it out of its array.
    void forget(int fd) noexcept;

    // Waits up to timeout_ms (-1: no limit) and stores at most `cap` events in `out`; returns
    // how many (0 on timeout or EINTR). A wake() comes back as one event with tag nullptr.
    int wait(PollEvent *out, int cap, int timeout_ms) noexcept;

    // Makes a wait() in another thread return. Async-signal-safe (one write(2)).
    void wake() noexcept;

private:
    void drain_wake() noexcept;

    int wake_rd_ = -1;  // what wait() watches (epoll: the eventfd itself)
    int wake_wr_ = -1;  // what wake() writes (the same eventfd, or a pipe's write end)
#if defined(SECLINK_POLLER_EPOLL)
    int epfd_ = -1;
#elif defined(SECLINK_POLLER_POLL)
    std::vector<pollfd> fds_;  // fds_[i] is watched for tags_[i]; fds_[0] is wake_rd_
    std::vector<void *> tags_;
    std::vector<int> slot_;  // slot_[fd]: its index in fds_, or -1
    size_t start_ = 0;       // where the next wait() starts looking, so no descriptor starves
#else
#error "SECLINK_POLLER_EPOLL or SECLINK_POLLER_POLL must be defined (CMake SECLINK_POLLER)"
#endif
};

}  // namespace seclink::detail
