// The Poller (core/src/poller.hpp) of whichever backend this build has (SECLINK_POLLER): the
// semantics the server relies on, checked alike for epoll and poll() over AF_UNIX socket pairs.
// An event that must come is waited for with a generous bound; one that must not is checked
// with a zero timeout once the state that would cause it is in place.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <set>
#include <thread>
#include <vector>

#include "poller.hpp"
#include "seclink/seclink.h"

using seclink::detail::kError;
using seclink::detail::kHangup;
using seclink::detail::kReadable;
using seclink::detail::kWritable;
using seclink::detail::PollEvent;
using seclink::detail::Poller;

namespace {

constexpr int kBound = 5000;  // ms: an event that must come

struct Pair {
    int fd[2] = {-1, -1};
    Pair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0); }
    Pair(const Pair &) = delete;
    Pair &operator=(const Pair &) = delete;
    ~Pair() {
        for (int f : fd)
            if (f >= 0) close(f);
    }
    void send_byte() const { ASSERT_EQ(write(fd[1], "x", 1), 1); }
    void close_peer() {
        close(fd[1]);
        fd[1] = -1;
    }
};

// Every event of one wait(), as (tag, events).
std::vector<PollEvent> wait_all(Poller &p, int timeout_ms) {
    PollEvent evs[64];
    int n = p.wait(evs, 64, timeout_ms);
    return {evs, evs + n};
}

class PollerTest : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_EQ(p.init(), SL_OK); }
    Poller p;
    int tag = 0;
};

TEST_F(PollerTest, IsTheBackendThisBuildChose) { EXPECT_STREQ(p.backend(), SECLINK_POLLER_NAME); }

TEST_F(PollerTest, NothingReadyTimesOutWithNoEvents) {
    Pair s;
    ASSERT_TRUE(p.add(s.fd[0], kReadable, &tag));
    EXPECT_TRUE(wait_all(p, 0).empty());
}

TEST_F(PollerTest, ReadinessIsLevelTriggeredReportedUntilRead) {
    Pair s;
    ASSERT_TRUE(p.add(s.fd[0], kReadable, &tag));
    s.send_byte();
    for (int round = 0; round < 3; ++round) {  // not read: reported every time
        auto evs = wait_all(p, kBound);
        ASSERT_EQ(evs.size(), 1u) << "round " << round;
        EXPECT_EQ(evs[0].tag, &tag);
        EXPECT_NE(evs[0].events & kReadable, 0u);
    }
    char b;
    ASSERT_EQ(read(s.fd[0], &b, 1), 1);
    EXPECT_TRUE(wait_all(p, 0).empty());
}

TEST_F(PollerTest, DroppingReadInterestSilencesPendingBytesAndAskingAgainReportsThem) {
    Pair s;
    ASSERT_TRUE(p.add(s.fd[0], kReadable, &tag));
    s.send_byte();
    ASSERT_TRUE(p.modify(s.fd[0], 0, &tag));  // what the server does to a backed-up session
    EXPECT_TRUE(wait_all(p, 0).empty());
    ASSERT_TRUE(p.modify(s.fd[0], kReadable, &tag));
    auto evs = wait_all(p, kBound);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_NE(evs[0].events & kReadable, 0u);
}

TEST_F(PollerTest, InterestZeroStillReportsTheHangUp) {
    Pair s;
    ASSERT_TRUE(p.add(s.fd[0], 0, &tag));
    s.close_peer();
    auto evs = wait_all(p, kBound);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].tag, &tag);
    EXPECT_NE(evs[0].events & (kHangup | kError), 0u);
}

TEST_F(PollerTest, WritableWhenAskedAndOnlyThen) {
    Pair s;
    ASSERT_TRUE(p.add(s.fd[0], 0, &tag));
    EXPECT_TRUE(wait_all(p, 0).empty());
    ASSERT_TRUE(p.modify(s.fd[0], kWritable, &tag));
    auto evs = wait_all(p, kBound);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].events & (kWritable | kReadable), kWritable);
}

TEST_F(PollerTest, ModifyChangesTheTag) {
    Pair s;
    int other = 0;
    ASSERT_TRUE(p.add(s.fd[0], kReadable, &tag));
    ASSERT_TRUE(p.modify(s.fd[0], kReadable, &other));
    s.send_byte();
    auto evs = wait_all(p, kBound);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].tag, &other);
}

TEST_F(PollerTest, RemovedDescriptorsAreNotReportedAndOthersStillAre) {
    Pair a, b, c;
    int ta = 0, tb = 0, tc = 0;
    ASSERT_TRUE(p.add(a.fd[0], kReadable, &ta));
    ASSERT_TRUE(p.add(b.fd[0], kReadable, &tb));
    ASSERT_TRUE(p.add(c.fd[0], kReadable, &tc));
    a.send_byte();
    b.send_byte();
    c.send_byte();
    p.remove(a.fd[0]);  // the poll() backend moves the last slot into the first one's place
    std::set<void *> seen;
    for (const auto &e : wait_all(p, kBound)) seen.insert(e.tag);
    EXPECT_EQ(seen, (std::set<void *>{&tb, &tc}));
    p.remove(c.fd[0]);
    p.remove(b.fd[0]);
    EXPECT_TRUE(wait_all(p, 0).empty());
    EXPECT_TRUE(p.add(a.fd[0], kReadable, &ta));  // and can come back
    auto evs = wait_all(p, kBound);
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].tag, &ta);
}

TEST_F(PollerTest, AddingTheSameDescriptorTwiceFails) {
    Pair s;
    ASSERT_TRUE(p.add(s.fd[0], kReadable, &tag));
    EXPECT_FALSE(p.add(s.fd[0], kReadable, &tag));
}

TEST_F(PollerTest, WakeFromAnotherThreadEndsAWaitOnceAsTagNull) {
    std::thread t([&] { p.wake(); });
    auto evs = wait_all(p, -1);  // no bound: only the wake-up can end it
    t.join();
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].tag, nullptr);
    p.wake();
    p.wake();  // several wake-ups before a wait: one event, then drained
    ASSERT_EQ(wait_all(p, kBound).size(), 1u);
    EXPECT_TRUE(wait_all(p, 0).empty());
}

// More ready descriptors than one wait() takes: the next waits report the others, so none starves.
TEST_F(PollerTest, MoreReadyThanCapacityAreAllReportedWithinAFewWaits) {
    constexpr int kN = 10, kCap = 3;
    std::vector<Pair> pairs(kN);
    std::vector<int> tags(kN);
    for (int i = 0; i < kN; ++i) {
        ASSERT_TRUE(p.add(pairs[i].fd[0], kReadable, &tags[i]));
        pairs[i].send_byte();
    }
    std::set<void *> seen;
    for (int round = 0; round < (kN + kCap - 1) / kCap; ++round) {
        PollEvent evs[kCap];
        int n = p.wait(evs, kCap, kBound);
        ASSERT_EQ(n, kCap);
        for (int i = 0; i < n; ++i) seen.insert(evs[i].tag);
    }
    EXPECT_EQ(seen.size(), static_cast<size_t>(kN));
}

}  // namespace
