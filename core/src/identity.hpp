// identity.hpp - server identity and key users (docs/PROTOCOL.md 14, 12): what the session layer
// needs from identity.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace seclink::detail {

using UserKeys = std::vector<std::pair<std::string, std::array<uint8_t, 32>>>;

// Reads an authorized-keys file (PROTOCOL.md 15): NAME BASE64(KEY) lines. SL_OK, or
// SL_EKEY_NOT_FOUND, SL_EIO, SL_EKEY_FORMAT (then *bad_line says which line). May throw bad_alloc.
int read_authorized_keys(const std::string &path, UserKeys &out, unsigned *bad_line);

std::string fingerprint_of(const uint8_t pub[32]);

// Password users (PROTOCOL.md 16): the file's lines, checked; whether `name` has this password
// (scrypt with the line's parameters, compared in constant time; an unknown name costs as much).
int read_password_users(const std::string &path, std::vector<std::string> &lines, unsigned *bad_line);
bool password_matches(const std::vector<std::string> &lines, const std::string &name, const uint8_t *password,
                      size_t len);

}  // namespace seclink::detail
