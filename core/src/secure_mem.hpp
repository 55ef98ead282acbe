// secure_mem.hpp - memory for key material (the PSK, the handshake's chaining key and the
// transport keys on their way into OpenSSL): pages marked MADV_DONTDUMP, so a core dump never
// holds them, and locked with mlock() where RLIMIT_MEMLOCK allows, so they are not swapped out.
// Wiped when released. See docs/DESIGN.md "Key handling" for what this does not cover.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "crypto.hpp"

namespace seclink::detail {

// A process-wide arena of fixed 64-byte slots carved from 64 KiB mappings. Mappings are never
// returned to the system (a server reuses the slots of ended sessions); a free slot holds only
// the link to the next free slot.
class SecretArena {
public:
    static constexpr size_t kSlot = 64;
    static constexpr size_t kMapping = 64 * 1024;

    static SecretArena &instance() noexcept {
        static SecretArena *arena = new SecretArena;  // never destroyed: secrets may be released during exit
        return *arena;
    }

    // A zeroed slot, or nullptr if no memory could be mapped.
    void *take() noexcept {
        std::lock_guard<std::mutex> lock(mu_);
        if (free_ == nullptr && !grow()) return nullptr;
        Free *f = free_;
        free_ = f->next;
        std::memset(f, 0, kSlot);
        return f;
    }

    // Wipes the slot and makes it free again.
    void give(void *p) noexcept {
        if (p == nullptr) return;
        wipe(p, kSlot);
        std::lock_guard<std::mutex> lock(mu_);
        Free *f = static_cast<Free *>(p);
        f->next = free_;
        free_ = f;
    }

    // Whether every mapping so far could also be locked in RAM (MADV_DONTDUMP or MADV_NOCORE always holds where the system has it).
    bool all_locked() noexcept {
        std::lock_guard<std::mutex> lock(mu_);
        return all_locked_;
    }

private:
    struct Free {
        Free *next;
    };

    bool grow() noexcept {
        void *m = mmap(nullptr, kMapping, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return false;
#if defined(MADV_DONTDUMP) || defined(MADV_NOCORE)
#ifdef MADV_DONTDUMP
        const int no_dump = MADV_DONTDUMP;
#else
        const int no_dump = MADV_NOCORE;  // FreeBSD's name for it
#endif
        if (madvise(m, kMapping, no_dump) != 0) {  // then it is no place for keys
            munmap(m, kMapping);
            return false;
        }
#endif  // (macOS has neither: the programs turn core dumps off for the whole process)
        if (mlock(m, kMapping) != 0) all_locked_ = false;  // RLIMIT_MEMLOCK: dump-proof, not swap-proof
        auto *base = static_cast<uint8_t *>(m);
        for (size_t off = kMapping; off >= kSlot; off -= kSlot) {
            Free *f = reinterpret_cast<Free *>(base + off - kSlot);
            f->next = free_;
            free_ = f;
        }
        return true;
    }

    std::mutex mu_;
    Free *free_ = nullptr;
    bool all_locked_ = true;
};

// N secret bytes in the arena, zeroed at first, wiped when destroyed. If the arena cannot grow
// (no memory can be mapped) the bytes live inside the object instead: a key must never be lost
// for want of a better place, and a process that cannot map 64 KiB fails soon anyway.
template <size_t N>
class Secret {
    static_assert(N <= SecretArena::kSlot, "a Secret fits one arena slot");

public:
    Secret() noexcept : p_(static_cast<uint8_t *>(SecretArena::instance().take())) {
        if (p_ == nullptr) p_ = fallback_;
    }
    ~Secret() {
        if (p_ == fallback_) wipe(fallback_, N);
        else SecretArena::instance().give(p_);
    }
    Secret(const Secret &) = delete;
    Secret &operator=(const Secret &) = delete;

    uint8_t *data() noexcept { return p_; }
    const uint8_t *data() const noexcept { return p_; }
    static constexpr size_t size() noexcept { return N; }
    operator uint8_t *() noexcept { return p_; }
    operator const uint8_t *() const noexcept { return p_; }
    bool in_arena() const noexcept { return p_ != fallback_; }

private:
    uint8_t *p_;
    uint8_t fallback_[N] = {};
};

}  // namespace seclink::detail
