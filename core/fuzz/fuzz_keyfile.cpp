// libFuzzer target: the key-file loader (docs/PROTOCOL.md section 6) on arbitrary file contents,
// through the public sl_key_load() on a real 0600 file in a private directory.
// Oracle: a content is accepted exactly when it is the canonical padded base64 of 32 bytes,
// optionally followed by one "\n" (the accepted key, encoded again, gives the input back);
// anything else is refused with KEY_FORMAT or KEY_SIZE and leaves the key zeroed.
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "seclink/seclink.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

const std::string &key_file() {
    static const std::string path = [] {
        char dir[] = "/tmp/seclink-fuzz-keyfile-XXXXXX";
        check(mkdtemp(dir) != nullptr);
        return std::string(dir) + "/psk";
    }();
    return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string &path = key_file();
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    check(fd >= 0);
    check(size == 0 || write(fd, data, size) == static_cast<ssize_t>(size));
    close(fd);
    uint8_t key[SL_KEY_BYTES];
    std::memset(key, 0xAA, sizeof key);
    int rc = sl_key_load(path.c_str(), key);
    if (rc != SL_OK) {
        check(rc == SL_EKEY_FORMAT || rc == SL_EKEY_SIZE);
        for (uint8_t b : key) check(b == 0);
        return 0;
    }
    unsigned char again[64];
    check(EVP_EncodeBlock(again, key, SL_KEY_BYTES) == 44);
    const size_t body = size > 0 && data[size - 1] == '\n' ? size - 1 : size;
    check(body == 44 && std::memcmp(again, data, 44) == 0);
    return 0;
}
