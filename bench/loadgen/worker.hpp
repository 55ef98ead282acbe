// loadgen: one event-loop thread's driver: what its connections do in each mode. Worker holds
// the phases every mode shares (setting up connections --ramp at a time, waiting for the start
// signal, draining, closing); RrWorker, IdleWorker and SessionsWorker (worker.cpp) are the modes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "conn.hpp"
#include "loop.hpp"
#include "protocol.hpp"
#include "request.hpp"
#include "stats.hpp"

namespace loadgen {

class Worker : protected Events, protected Loop::Driver {
public:
    // A driver for cfg.opt.mode; this thread (`index`) gets `nconns` connections.
    static std::unique_ptr<Worker> make(const Config &cfg, Shared &sh, unsigned index, size_t nconns);
    Worker(const Config &cfg, Shared &sh, unsigned index, size_t nconns);
    virtual ~Worker() = default;
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;

    void run();  // the mode's phases, then close every connection

    const Histogram &latency() const { return hist_; }
    uint64_t counted() const { return counted_; }

protected:
    enum class Phase { Setup, Waiting, Run };

    virtual void phases() = 0;
    // Mode-specific reactions; the connection is already Ready. `t` is when the reply was verified.
    virtual void on_established(Conn &c) = 0;
    virtual void on_reply(Conn &c, uint64_t t) = 0;
    void closing_flushed(Conn &) override {}

    // Shared phases.
    void setup();        // opens every connection of this thread and brings it to Ready
    void wait_for_go();  // until the main thread starts the window (t0_, t1_)
    void drain();        // runs until no request (or session) is outstanding; none starts after t1
    void close_all();    // sends CLOSE (seclink) best-effort and closes every socket

    void send_request(Conn &c);  // queues request c.seq + 1; the connection is Waiting
    void count(uint64_t t, uint64_t since);  // a reply at t: counted if inside the window

    [[noreturn]] void unexpected_handshake(const Conn &c);
    [[noreturn]] void unexpected_reply(const Conn &c);

    const Config &cfg_;
    const Options &opt_;
    Shared &sh_;
    const unsigned index_;
    Requests req_;
    std::unique_ptr<Protocol> proto_;  // before loop_: the loop's connections use it until closed
    Loop loop_;
    Phase phase_ = Phase::Setup;
    size_t setup_done_ = 0;
    size_t active_ = 0;  // rr: requests in flight; sessions: session slots still running
    uint64_t t0_ = 0, t1_ = 0;

private:
    void established(Conn &c) final;
    void reply_ok(Conn &c) final;

    uint64_t counted_ = 0;
    Histogram hist_;
};

}  // namespace loadgen
