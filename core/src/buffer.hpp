// buffer.hpp - a growable byte buffer that never value-initialises and keeps its capacity, so the
// steady-state message path allocates nothing once buffers have reached their working size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#include "crypto.hpp"

namespace seclink::detail {

class Buffer {
public:
    Buffer() = default;
    Buffer(const Buffer &) = delete;
    Buffer &operator=(const Buffer &) = delete;
    ~Buffer() { release(); }

    uint8_t *data() noexcept { return data_.get(); }
    const uint8_t *data() const noexcept { return data_.get(); }
    size_t capacity() const noexcept { return cap_; }

    // Makes room for n bytes, preserving the first `keep`, growing geometrically but never past
    // `limit` (a frame's announced size: its buffer ends exactly that large). False if out of memory.
    bool reserve(size_t n, size_t keep = 0, size_t limit = SIZE_MAX) noexcept {
        if (n <= cap_) return true;
        size_t cap = cap_ < 256 ? 256 : cap_;
        while (cap < n) cap = cap > SIZE_MAX / 2 ? n : cap * 2;
        if (cap > limit) cap = limit < n ? n : limit;
        std::unique_ptr<uint8_t[]> p(new (std::nothrow) uint8_t[cap]);
        if (!p) return false;
        if (keep != 0) std::memcpy(p.get(), data_.get(), keep);
        release();
        data_ = std::move(p);
        cap_ = cap;
        return true;
    }

    // Wipes and frees the storage (it may have held plaintext).
    void release() noexcept {
        wipe(data_.get(), cap_);
        data_.reset();
        cap_ = 0;
    }

private:
    std::unique_ptr<uint8_t[]> data_;
    size_t cap_ = 0;
};

}  // namespace seclink::detail
