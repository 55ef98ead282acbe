// keylist.hpp - a server's pre-shared keys as the Python package passes them (key rotation,
// docs/PROTOCOL.md 12), for the native Server and the asyncio Policy alike.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <openssl/crypto.h>
#include <string.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "seclink/seclink.h"

namespace seclink_py {

namespace py = pybind11;

// A server's keys (key rotation, docs/PROTOCOL.md 12): 1 to SL_MAX_PSKS keys one after the other,
// and optionally one name each for the log. Checked here; the copies are wiped by the caller.
struct KeyList {
    explicit KeyList(const py::buffer &psks, const std::optional<std::vector<std::string>> &given_names) {
        py::buffer_info b = psks.request();  // the package's wipeable bytearray: C-contiguous bytes
        const size_t n = static_cast<size_t>(b.size * b.itemsize);
        if (n == 0 || n % SL_KEY_BYTES != 0 || n / SL_KEY_BYTES > SL_MAX_PSKS || (b.ndim == 1 && b.strides[0] != b.itemsize))
            throw py::value_error("a server takes 1 to " + std::to_string(SL_MAX_PSKS) + " pre-shared keys of " +
                                  std::to_string(SL_KEY_BYTES) + " contiguous bytes each, not " + std::to_string(n) + " bytes");
        const auto *p = static_cast<const uint8_t *>(b.ptr);
        keys.assign(p, p + n);
        if (given_names) {
            if (given_names->size() != count()) throw py::value_error("one name per pre-shared key");
            names = *given_names;
            for (const auto &name : names) ptrs.push_back(name.c_str());
        }
    }
    ~KeyList() { OPENSSL_cleanse(keys.data(), keys.size()); }
    KeyList(const KeyList &) = delete;
    KeyList &operator=(const KeyList &) = delete;
    size_t count() const { return keys.size() / SL_KEY_BYTES; }
    void apply(sl_server_config &cfg) const {
        cfg.psk = keys.data();
        cfg.psk_count = count();
        cfg.psk_names = ptrs.empty() ? nullptr : ptrs.data();
    }

    std::vector<uint8_t> keys;
    std::vector<std::string> names;
    std::vector<const char *> ptrs;
};

}  // namespace seclink_py
