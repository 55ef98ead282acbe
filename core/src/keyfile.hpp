// keyfile.hpp - pre-shared key files and where they live (docs/PROTOCOL.md section 6).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "crypto.hpp"

namespace seclink::detail {

int decode_key(const char *text, size_t len, uint8_t key[kKeyLen]) noexcept;
// *warnings (if not NULL) receives SL_KEY_WARN_* bits on success.
int load_key(const char *path, uint8_t key[kKeyLen], unsigned *warnings = nullptr) noexcept;
int generate_key(const char *path, uint8_t key_out[kKeyLen]) noexcept;
// Creates each missing parent directory of `path` with mode 0700. SL_OK, SL_EIO; may throw bad_alloc.
int make_parents(const std::string &path);
std::string config_dir();                       // empty if no home directory can be found
std::string key_path(const char *explicit_path);  // likewise

}  // namespace seclink::detail
