// Key material is kept out of core dumps: the PSK copies the library keeps live in mappings the
// kernel marks "dd" (MADV_DONTDUMP) in /proc/self/smaps.
#include <sys/mman.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "secure_mem.hpp"
#include "test_util.hpp"

using namespace sltest;

namespace {

struct Mapping {
    uintptr_t lo = 0, hi = 0;
    bool readable = false;  // "rw-p" and anonymous: what the arena maps (never [vvar] and the like)
    std::vector<std::string> flags;  // VmFlags
    bool dont_dump() const {
        for (const auto &f : flags)
            if (f == "dd") return true;
        return false;
    }
};

std::vector<Mapping> mappings() {
    std::vector<Mapping> out;
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    while (std::getline(smaps, line)) {
        if (line.rfind("VmFlags:", 0) == 0 && !out.empty()) {
            std::istringstream words(line.substr(8));
            for (std::string w; words >> w;) out.back().flags.push_back(w);
            continue;
        }
        const size_t dash = line.find('-'), space = line.find(' ');
        if (dash == std::string::npos || space == std::string::npos || dash > space) continue;
        const std::string lo = line.substr(0, dash), hi = line.substr(dash + 1, space - dash - 1);
        if (lo.find_first_not_of("0123456789abcdef") != std::string::npos || hi.empty() ||
            hi.find_first_not_of("0123456789abcdef") != std::string::npos)
            continue;  // a field line ("Size: ..."), not a mapping header
        Mapping m;
        m.lo = std::stoull(lo, nullptr, 16);
        m.hi = std::stoull(hi, nullptr, 16);
        m.readable = line.compare(space + 1, 4, "rw-p") == 0 && line.find_first_of("/[", space) == std::string::npos;
        out.push_back(m);
    }
    return out;
}

// How many times `needle` occurs in readable mappings marked MADV_DONTDUMP.
int count_in_dont_dump(const uint8_t *needle, size_t n) {
    int found = 0;
    for (const Mapping &m : mappings()) {
        // Small mappings only: sanitizers mark their (terabyte, mostly unbacked) shadow "dd" too.
        if (!m.readable || !m.dont_dump() || m.hi - m.lo > (64u << 20)) continue;
        const auto *p = reinterpret_cast<const uint8_t *>(m.lo);
        const size_t len = m.hi - m.lo;
        for (const void *hit = memmem(p, len, needle, n); hit != nullptr;) {
            ++found;
            const auto *next = static_cast<const uint8_t *>(hit) + 1;
            hit = memmem(next, len - static_cast<size_t>(next - p), needle, n);
        }
    }
    return found;
}

std::array<uint8_t, 32> distinctive_key(uint8_t seed) {
    std::array<uint8_t, 32> k{};
    for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0xA5 ^ (seed + 7 * i));
    return k;
}

}  // namespace

TEST(SecureMemTest, AConnectionKeepsItsPskInDontDumpMemoryBeforeAndAfterStart) {
    const auto psk = distinctive_key(1);
    ASSERT_EQ(count_in_dont_dump(psk.data(), psk.size()), 0);
    sl_conn *c = nullptr;
    ASSERT_EQ(sl_conn_new(&c, SL_CLIENT, psk.data()), SL_OK);
    EXPECT_EQ(count_in_dont_dump(psk.data(), psk.size()), 1) << "the connection's copy of the PSK";
    ASSERT_EQ(sl_conn_start(c), SL_OK);
    EXPECT_EQ(count_in_dont_dump(psk.data(), psk.size()), 1) << "the handshake's copy (the connection's is wiped)";
    sl_conn_free(c);
    EXPECT_EQ(count_in_dont_dump(psk.data(), psk.size()), 0) << "wiped when freed";
}

TEST(SecureMemTest, TheServerKeepsItsPskInDontDumpMemory) {
    const auto psk = distinctive_key(2);
    sl_server_config cfg;
    sl_server_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.threads = 1;
    cfg.psk = psk.data();
    sl_server *s = nullptr;
    ASSERT_EQ(sl_server_new(&s, &cfg), SL_OK);
    EXPECT_EQ(count_in_dont_dump(psk.data(), psk.size()), 1);
    sl_server_free(s);
    EXPECT_EQ(count_in_dont_dump(psk.data(), psk.size()), 0);
}

TEST(SecureMemTest, ASecretIsZeroedInADontDumpPageAndWipedOnRelease) {
    using seclink::detail::Secret;
    const auto key = distinctive_key(3);
    const uint8_t *where = nullptr;
    {
        Secret<32> s;
        ASSERT_TRUE(s.in_arena());
        for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(s.data()[i], 0);
        std::memcpy(s, key.data(), key.size());
        where = s.data();
        bool marked = false;
        for (const Mapping &m : mappings())
            if (m.lo <= reinterpret_cast<uintptr_t>(where) && reinterpret_cast<uintptr_t>(where) < m.hi)
                marked = m.dont_dump();
        EXPECT_TRUE(marked) << "the page holding the secret is not MADV_DONTDUMP";
        EXPECT_EQ(count_in_dont_dump(key.data(), key.size()), 1);
    }
    EXPECT_EQ(count_in_dont_dump(key.data(), key.size()), 0);
    // The slot is free again (its first bytes link the free list); the rest is zero.
    for (size_t i = sizeof(void *); i < 32; ++i) EXPECT_EQ(where[i], 0) << i;
}

TEST(SecureMemTest, SlotsAreReusedAndManySecretsFit) {
    using seclink::detail::Secret;
    std::vector<std::unique_ptr<Secret<32>>> many;
    for (int i = 0; i < 3000; ++i) {  // more than one 64 KiB mapping
        many.push_back(std::make_unique<Secret<32>>());
        ASSERT_TRUE(many.back()->in_arena());
    }
    const uint8_t *last = many.back()->data();
    many.pop_back();
    Secret<32> again;
    EXPECT_EQ(again.data(), last) << "a released slot is the next one taken";
}
