// loadgen: the mode drivers (see worker.hpp).
//   rr        every connection has exactly one request in flight; the next is sent when the reply
//             has been checked, until the end of the window; then the ones in flight are drained
//   idle      sessions set up with --idle-msgs round trips each, then held until released
//   sessions  --parallel slots, each looping connect + handshake + one request + CLOSE + close
#include "worker.hpp"

#include "common.hpp"

namespace loadgen {

// ---- what every mode shares ----------------------------------------------------------------

Worker::Worker(const Config &cfg, Shared &sh, unsigned index, size_t nconns)
    : cfg_(cfg), opt_(cfg.opt), sh_(sh), index_(index), req_(cfg), proto_(make_protocol(cfg, req_, *this)),
      loop_(cfg, *proto_, *this, index, nconns) {}

void Worker::run() {
    phases();
    close_all();
}

void Worker::setup() {
    phase_ = Phase::Setup;
    auto &conns = loop_.conns();
    size_t next = 0;
    while (setup_done_ < conns.size()) {
        while (next < conns.size() && next - setup_done_ < opt_.ramp) loop_.open(conns[next++]);
        if (now_ns() > sh_.setup_deadline)
            fatal("thread %u: only %zu of its %zu connections were set up within %.0f s (server too slow, "
                  "or not accepting?)",
                  index_, setup_done_, conns.size(), opt_.timeout);
        loop_.poll(20);
    }
    sh_.ready.fetch_add(1);
}

void Worker::wait_for_go() {
    phase_ = Phase::Waiting;
    while (!sh_.go.load(std::memory_order_acquire)) {
        if (now_ns() > sh_.setup_deadline + seconds_to_ns(opt_.timeout)) fatal("thread %u: no start signal", index_);
        loop_.poll(5);  // anything arriving now is unexpected and fails the run
    }
    phase_ = Phase::Run;
    t0_ = sh_.t0.load();
    t1_ = sh_.t1.load();
}

void Worker::drain() {
    const uint64_t limit = t1_ + seconds_to_ns(opt_.timeout);
    while (active_ > 0) {
        if (now_ns() > limit) {
            size_t waiting = 0;
            for (const Conn &c : loop_.conns()) waiting += c.st != St::Free && c.st != St::Ready;
            fatal("thread %u: %zu connection(s) still waiting %.0f s after the end of the run (server stalled?)",
                  index_, waiting, opt_.timeout);
        }
        loop_.poll(50);
    }
}

void Worker::close_all() {
    for (Conn &c : loop_.conns()) {
        if (c.fd < 0) continue;
        if (proto_->queue_close(c, /*best_effort=*/true)) loop_.flush(c, /*fail_on_error=*/false);
        loop_.close(c);
    }
}

void Worker::send_request(Conn &c) {
    ++c.seq;
    proto_->queue_request(c);
    c.st = St::Waiting;
    c.t_send = now_ns();
}

void Worker::count(uint64_t t, uint64_t since) {
    if (t >= t0_ && t < t1_) {
        ++counted_;
        hist_.add(t - since);
    }
}

void Worker::established(Conn &c) {
    c.st = St::Ready;
    on_established(c);
}

void Worker::reply_ok(Conn &c) {
    const uint64_t t = now_ns();
    c.st = St::Ready;
    on_reply(c, t);
}

void Worker::unexpected_handshake(const Conn &c) {
    fatal("connection #%u: handshake completed outside the setup phase", c.id);
}

void Worker::unexpected_reply(const Conn &c) { fatal("connection #%u: reply while no request was in flight", c.id); }

namespace {

// ---- rr --------------------------------------------------------------------------------------

class RrWorker final : public Worker {
public:
    using Worker::Worker;

private:
    void phases() override {
        setup();
        wait_for_go();
        for (Conn &c : loop_.conns()) {
            send(c);
            ++active_;
            loop_.pump(c);
        }
        drain();
    }

    void on_established(Conn &c) override {
        if (phase_ != Phase::Setup) unexpected_handshake(c);
        ++setup_done_;
    }

    void on_reply(Conn &c, uint64_t t) override {
        if (phase_ != Phase::Run) unexpected_reply(c);
        count(t, c.t_send);
        if (t < t1_) send(c);
        else --active_;
    }

    // Still one request in flight: where the protocol can, write this one, then prepare the next
    // while the server works, so the loadgen's own encryption is not part of the round trip.
    void send(Conn &c) {
        send_request(c);
        if (!proto_->prepares_ahead()) return;
        loop_.flush(c);
        proto_->prepare_next(c);
    }
};

// ---- idle ------------------------------------------------------------------------------------

class IdleWorker final : public Worker {
public:
    using Worker::Worker;

private:
    void phases() override {
        setup();
        hold();
    }

    // Keep watching the held sessions (any byte or close from the server is an error).
    void hold() {
        phase_ = Phase::Waiting;
        const uint64_t limit = sh_.setup_deadline + seconds_to_ns(opt_.hold + opt_.timeout + 10);
        while (!sh_.release.load(std::memory_order_acquire)) {
            if (now_ns() > limit) fatal("thread %u: no release signal", index_);
            loop_.poll(20);
        }
    }

    void on_established(Conn &c) override {
        if (phase_ != Phase::Setup) unexpected_handshake(c);
        if (opt_.idle_msgs > 0) send_request(c);
        else ++setup_done_;
    }

    // The round trips before holding the session.
    void on_reply(Conn &c, uint64_t) override {
        if (phase_ != Phase::Setup) unexpected_reply(c);
        if (c.seq < opt_.idle_msgs) send_request(c);
        else ++setup_done_;
    }
};

// ---- sessions --------------------------------------------------------------------------------

class SessionsWorker final : public Worker {
public:
    using Worker::Worker;

private:
    void phases() override {
        sh_.ready.fetch_add(1);  // nothing to set up
        wait_for_go();
        // This thread's share of --parallel session loops; each slot reopens after each session.
        for (Conn &c : loop_.conns()) {
            loop_.open(c);
            ++active_;
        }
        drain();
    }

    void on_established(Conn &c) override {
        if (phase_ != Phase::Run) unexpected_handshake(c);
        send_request(c);
    }

    // The latency is the whole session up to the verified reply.
    void on_reply(Conn &c, uint64_t t) override {
        if (phase_ != Phase::Run) unexpected_reply(c);
        count(t, c.t_open);
        proto_->queue_close(c, /*best_effort=*/false);
        c.st = St::Closing;  // the loop writes what is pending, then calls closing_flushed
    }

    // End this session and (before t1) start the next.
    void closing_flushed(Conn &c) override {
        loop_.close(c);
        if (now_ns() < t1_) loop_.open(c);
        else --active_;
    }
};

}  // namespace

std::unique_ptr<Worker> Worker::make(const Config &cfg, Shared &sh, unsigned index, size_t nconns) {
    switch (cfg.opt.mode) {
    case Mode::RR: return std::make_unique<RrWorker>(cfg, sh, index, nconns);
    case Mode::Idle: return std::make_unique<IdleWorker>(cfg, sh, index, nconns);
    case Mode::Sessions: break;
    }
    return std::make_unique<SessionsWorker>(cfg, sh, index, nconns);
}

}  // namespace loadgen
