// files_test.cpp - the streaming pieces of file transfer (files.hpp) that both sides share.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "files.hpp"

using namespace seclink::detail;

namespace {

std::vector<uint8_t> sha256(const uint8_t *p, size_t n) {
    std::vector<uint8_t> out(32);
    unsigned len = 0;
    EXPECT_EQ(EVP_Digest(p, n, out.data(), &len, EVP_sha256(), nullptr), 1);
    return out;
}

struct TempFile {
    int fd = -1;
    explicit TempFile(const std::vector<uint8_t> &content) {
        char path[] = "/tmp/seclink-files-test-XXXXXX";
        fd = mkstemp(path);
        unlink(path);
        EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    }
    ~TempFile() { close(fd); }
};

}  // namespace

// The resume check on both sides: the digest of a file's first n bytes, read through a buffer
// smaller than n (several reads), from the start whatever was hashed before.
TEST(HashFilePrefix, DigestOfTheFirstBytes) {
    std::vector<uint8_t> content(1000);
    for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<uint8_t>(i * 7 + 3);
    TempFile f(content);
    Sha256 sha;
    sha.update(content.data(), 10);  // earlier state is discarded
    uint8_t buf[64], got[32];
    for (size_t n : {size_t{0}, size_t{1}, size_t{64}, size_t{700}, size_t{1000}}) {
        ASSERT_TRUE(hash_file_prefix(f.fd, n, sha, buf, sizeof buf)) << n;
        ASSERT_TRUE(sha.digest(got));
        EXPECT_EQ(std::vector<uint8_t>(got, got + 32), sha256(content.data(), n)) << n;
    }
    EXPECT_EQ(lseek(f.fd, 0, SEEK_CUR), 1000);  // pread: the file offset is not moved
}

TEST(HashFilePrefix, ShorterFileOrBadDescriptorFails) {
    TempFile f(std::vector<uint8_t>(100, 0x5A));
    Sha256 sha;
    uint8_t buf[64];
    EXPECT_FALSE(hash_file_prefix(f.fd, 101, sha, buf, sizeof buf));
    EXPECT_FALSE(hash_file_prefix(-1, 1, sha, buf, sizeof buf));
    EXPECT_TRUE(hash_file_prefix(-1, 0, sha, buf, sizeof buf));  // nothing to read: the empty digest
}
