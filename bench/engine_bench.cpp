// engine_bench - the seclink/1 engine next to the raw primitives it is built on, in one run:
//   * seal+open throughput (client sl_conn_send -> server sl_conn_feed) vs raw OpenSSL
//     AES-256-GCM encrypt+decrypt of the same sizes with one reused context per direction;
//   * full handshakes (both sides, in memory) vs the X25519 work they contain
//     (two key generations and two DH computations);
//   * allocations per message on the steady-state path (OpenSSL's allocator and operator new
//     are both counted).
// After the Google Benchmark table it prints the ratios the project's targets are stated in.
#include <benchmark/benchmark.h>
#include <openssl/crypto.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "crypto.hpp"
#include "seclink/seclink.h"

namespace d = seclink::detail;

// ---- allocation counting -------------------------------------------------------------------
static std::atomic<uint64_t> g_allocs{0};

static void *count_malloc(size_t n, const char *, int) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(n);
}
static void *count_realloc(void *p, size_t n, const char *, int) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    return std::realloc(p, n);
}
static void count_free(void *p, const char *, int) { std::free(p); }

void *operator new(size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    if (void *p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void *operator new[](size_t n) { return operator new(n); }
void operator delete(void *p) noexcept { std::free(p); }
void operator delete[](void *p) noexcept { std::free(p); }
void operator delete(void *p, size_t) noexcept { std::free(p); }
void operator delete[](void *p, size_t) noexcept { std::free(p); }

// ---- helpers -------------------------------------------------------------------------------
namespace {

const uint8_t kPsk[32] = {7};

void must(bool ok, const char *what) {
    if (!ok) {
        std::fprintf(stderr, "engine_bench: %s failed\n", what);
        std::exit(1);
    }
}

// Moves all of `from`'s pending bytes into `to`, feeding straight from `from`'s buffer.
size_t deliver(sl_conn *from, sl_conn *to) {
    const uint8_t *p = nullptr;
    size_t n = 0, off = 0, msgs = 0;
    sl_conn_pending(from, &p, &n);
    while (off < n) {
        size_t used = 0;
        sl_event ev;
        must(sl_conn_feed(to, p + off, n - off, &used, &ev) == SL_OK, "feed");
        off += used;
        msgs += ev.type == SL_EVENT_MESSAGE;
    }
    sl_conn_consume(from, n);
    return msgs;
}

struct Established {
    sl_conn *client = nullptr, *server = nullptr;
    Established() {
        must(sl_conn_new(&client, SL_CLIENT, kPsk) == SL_OK && sl_conn_new(&server, SL_SERVER, kPsk) == SL_OK, "new");
        must(sl_conn_start(client) == SL_OK && sl_conn_start(server) == SL_OK, "start");
        deliver(client, server);
        deliver(server, client);
        must(sl_conn_is_established(client) && sl_conn_is_established(server), "handshake");
    }
    ~Established() {
        sl_conn_free(client);
        sl_conn_free(server);
    }
};

// ---- benchmarks ----------------------------------------------------------------------------
void BM_RawAesGcm(benchmark::State &state) {
    const size_t n = static_cast<size_t>(state.range(0));
    uint8_t key[32] = {1}, iv[12] = {0}, tag[16];
    d::Aead enc, dec;
    must(enc.init(key, true) == SL_OK && dec.init(key, false) == SL_OK, "init");
    std::vector<uint8_t> pt(n, 0x61), ct(n), back(n + 1);
    uint64_t counter = 0;
    for (auto _ : state) {
        d::make_nonce(counter++, iv);
        must(enc.seal(iv, nullptr, 0, pt.data(), n, nullptr, 0, ct.data(), tag) == SL_OK, "seal");
        must(dec.open(iv, nullptr, 0, ct.data(), n, tag, back.data()), "open");
        benchmark::DoNotOptimize(back.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

void BM_EngineSealOpen(benchmark::State &state) {
    const size_t n = static_cast<size_t>(state.range(0));
    Established e;
    std::vector<uint8_t> msg(n, 0x61);
    for (int i = 0; i < 8; ++i) {  // warm up: buffers reach their working size
        sl_conn_send(e.client, SL_MSG_DATA, msg.data(), n);
        deliver(e.client, e.server);
    }
    const uint64_t allocs_before = g_allocs.load();
    for (auto _ : state) {
        must(sl_conn_send(e.client, SL_MSG_DATA, msg.data(), n) == SL_OK, "send");
        must(deliver(e.client, e.server) == 1, "deliver");
    }
    const double allocs = static_cast<double>(g_allocs.load() - allocs_before);
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
    state.counters["allocs_per_msg"] = allocs / static_cast<double>(state.iterations());
}

void BM_Handshake(benchmark::State &state) {
    for (auto _ : state) {
        Established e;
        benchmark::DoNotOptimize(e.client);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// The X25519 work inside one handshake: each side generates a key pair and computes one DH.
void BM_HandshakeX25519Work(benchmark::State &state) {
    uint8_t out[32];
    for (auto _ : state) {
        d::X25519 a, b;
        must(a.generate() == SL_OK && b.generate() == SL_OK, "keygen");
        must(a.derive(b.public_key(), out) == SL_OK && b.derive(a.public_key(), out) == SL_OK, "dh");
        benchmark::DoNotOptimize(out);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// The pieces of one side's handshake, to see where its time goes.
void BM_X25519Keygen(benchmark::State &state) {
    for (auto _ : state) {
        d::X25519 a;
        must(a.generate() == SL_OK, "keygen");
        benchmark::DoNotOptimize(a.public_key());
    }
}
void BM_X25519Derive(benchmark::State &state) {
    d::X25519 a, b;
    must(a.generate() == SL_OK && b.generate() == SL_OK, "keygen");
    uint8_t out[32];
    for (auto _ : state) {
        must(a.derive(b.public_key(), out) == SL_OK, "dh");
        benchmark::DoNotOptimize(out);
    }
}
void BM_Hkdf3(benchmark::State &state) {
    uint8_t ck[32] = {1}, ikm[32] = {2}, out[96];
    for (auto _ : state) {
        must(d::hkdf(ck, ikm, 32, out, 3) == SL_OK, "hkdf");
        benchmark::DoNotOptimize(out);
    }
}
void BM_Sha256(benchmark::State &state) {
    uint8_t h[32] = {1}, data[64] = {2};
    for (auto _ : state) {
        must(d::sha256(h, 32, data, 64, h) == SL_OK, "sha256");
        benchmark::DoNotOptimize(h);
    }
}

const int64_t kSizes[] = {64, 1024, 16 * 1024, 1024 * 1024};

// Keeps each run's real time per iteration, to print the ratios afterwards.
class Collector : public benchmark::ConsoleReporter {
public:
    std::map<std::string, double> ns;
    std::map<std::string, double> allocs;
    void ReportRuns(const std::vector<Run> &runs) override {
        ConsoleReporter::ReportRuns(runs);
        for (const Run &r : runs) {
            if (r.run_type != Run::RT_Iteration) continue;
            ns[r.benchmark_name()] = r.GetAdjustedRealTime();
            auto it = r.counters.find("allocs_per_msg");
            if (it != r.counters.end()) allocs[r.benchmark_name()] = it->second.value;
        }
    }
};

}  // namespace

BENCHMARK(BM_RawAesGcm)->ArgName("bytes")->Arg(kSizes[0])->Arg(kSizes[1])->Arg(kSizes[2])->Arg(kSizes[3]);
BENCHMARK(BM_EngineSealOpen)->ArgName("bytes")->Arg(kSizes[0])->Arg(kSizes[1])->Arg(kSizes[2])->Arg(kSizes[3]);
BENCHMARK(BM_Handshake);
BENCHMARK(BM_HandshakeX25519Work);
BENCHMARK(BM_X25519Keygen);
BENCHMARK(BM_X25519Derive);
BENCHMARK(BM_Hkdf3);
BENCHMARK(BM_Sha256);

int main(int argc, char **argv) {
    // Must precede every OpenSSL allocation.
    must(CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free) == 1, "CRYPTO_set_mem_functions");
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    Collector rep;
    benchmark::RunSpecifiedBenchmarks(&rep);
    benchmark::Shutdown();

    std::printf("\nTargets (engine vs raw AES-256-GCM, seal+open; handshake vs its X25519 work):\n");
    for (int64_t n : kSizes) {
        const std::string s = std::to_string(n);
        auto raw = rep.ns.find("BM_RawAesGcm/bytes:" + s), eng = rep.ns.find("BM_EngineSealOpen/bytes:" + s);
        if (raw == rep.ns.end() || eng == rep.ns.end()) continue;
        const double ratio = raw->second / eng->second;
        const bool targeted = n >= 16 * 1024;
        std::printf("  %8lld B: engine at %5.1f%% of raw AES-GCM throughput%s; %.2f allocations per message\n",
                    static_cast<long long>(n), 100 * ratio,
                    targeted ? (ratio >= 0.85 ? " (target >= 85%: met)" : " (target >= 85%: MISSED)") : "",
                    rep.allocs["BM_EngineSealOpen/bytes:" + s]);
    }
    auto hs = rep.ns.find("BM_Handshake"), dh = rep.ns.find("BM_HandshakeX25519Work");
    if (hs != rep.ns.end() && dh != rep.ns.end()) {
        const double ratio = hs->second / dh->second;
        std::printf("  handshake: %.1f us, its X25519 work %.1f us: %.2fx (target <= 1.5x: %s)\n", hs->second / 1e3,
                    dh->second / 1e3, ratio, ratio <= 1.5 ? "met" : "MISSED");
    }
    return 0;
}
