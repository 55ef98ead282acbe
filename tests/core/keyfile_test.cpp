// Pre-shared key files (docs/PROTOCOL.md section 6).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "test_util.hpp"

using namespace sltest;
namespace fs = std::filesystem;

namespace {

class KeyFileTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/seclink-keytest-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::string write(const std::string &name, const std::string &content, mode_t mode = 0600) {
        std::string path = dir_ + "/" + name;
        std::ofstream(path, std::ios::binary) << content;
        EXPECT_EQ(chmod(path.c_str(), mode), 0);
        return path;
    }
    int load(const std::string &path) {
        uint8_t key[32];
        std::memset(key, 0xAA, sizeof key);
        int rc = sl_key_load(path.c_str(), key);
        if (rc != SL_OK) {
            for (uint8_t b : key) EXPECT_EQ(b, 0) << "key not zeroed on error";
        }
        return rc;
    }
    std::string dir_;
};

// base64 of 32 bytes 0x00..0x1f
const std::string kB64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

}  // namespace

TEST_F(KeyFileTest, LoadsBase64WithOrWithoutNewline) {
    for (const std::string &text : {kB64, kB64 + "\n"}) {
        uint8_t key[32];
        ASSERT_EQ(sl_key_load(write("psk", text).c_str(), key), SL_OK);
        for (int i = 0; i < 32; ++i) EXPECT_EQ(key[i], i);
        fs::remove(dir_ + "/psk");
    }
}

TEST_F(KeyFileTest, GroupOrOtherAccessIsRefused) {
    for (mode_t mode : {0644, 0640, 0604, 0620, 0602, 0610}) {
        EXPECT_EQ(load(write("psk", kB64, mode)), SL_EKEY_PERMISSIONS) << std::oct << mode;
        fs::remove(dir_ + "/psk");
    }
    EXPECT_EQ(load(write("psk", kB64, 0400)), SL_OK);
}

TEST_F(KeyFileTest, SymlinkIsRefused) {
    std::string target = write("real", kB64);
    std::string link = dir_ + "/link";
    ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
    EXPECT_EQ(load(link), SL_EKEY_SYMLINK);
}

TEST_F(KeyFileTest, WrongDecodedSizesAreRefused) {
    EXPECT_EQ(load(write("k31", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==")), SL_EKEY_SIZE);
    EXPECT_EQ(load(write("k33", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g")), SL_EKEY_SIZE);
    EXPECT_EQ(load(write("k16", "AAECAwQFBgcICQoLDA0ODw==")), SL_EKEY_SIZE);
}

TEST_F(KeyFileTest, BadBase64IsRefused) {
    for (const std::string &bad :
         {std::string("not base64 at all!!"), kB64.substr(0, 43), "*" + kB64.substr(1), kB64 + "\n\n",
          kB64 + " ", " " + kB64, kB64 + "\r\n", kB64.substr(0, 20) + "\n" + kB64.substr(20), std::string(""),
          std::string("===="), kB64.substr(0, 40) + "=AAA",
          kB64.substr(0, 42) + "9=" /* non-canonical: unused bits set */, std::string(300, 'A')}) {
        EXPECT_EQ(load(write("bad", bad)), SL_EKEY_FORMAT) << "'" << bad << "'";
        fs::remove(dir_ + "/bad");
    }
}

TEST_F(KeyFileTest, MissingFileAndDirectoryHaveTheirOwnErrors) {
    EXPECT_EQ(load(dir_ + "/nope"), SL_EKEY_NOT_FOUND);
    EXPECT_EQ(load(dir_), SL_EKEY_NOT_FILE);
    EXPECT_EQ(load("/dev/null"), SL_EKEY_NOT_FILE);
}

TEST_F(KeyFileTest, ErrorMessagesSayWhatToDo) {
    EXPECT_NE(std::string(sl_strerror(SL_EKEY_PERMISSIONS)).find("chmod 600"), std::string::npos);
    // In library terms (no program flags: the programs add "--keygen" themselves).
    EXPECT_NE(std::string(sl_strerror(SL_EKEY_NOT_FOUND)).find("generate a key"), std::string::npos);
    EXPECT_STREQ(sl_errname(SL_EKEY_SYMLINK), "KEY_SYMLINK");
}

TEST_F(KeyFileTest, GenerateCreates0600FileThatLoadsBack) {
    std::string path = dir_ + "/sub/dir/psk";
    uint8_t made[32], loaded[32];
    ASSERT_EQ(sl_key_generate(path.c_str(), made), SL_OK);
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(stat((dir_ + "/sub").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_EQ(fs::file_size(path), 45u);  // 44 base64 characters and a newline
    ASSERT_EQ(sl_key_load(path.c_str(), loaded), SL_OK);
    EXPECT_EQ(hex(made, 32), hex(loaded, 32));
}

TEST_F(KeyFileTest, GenerateIgnoresAPermissiveUmask) {
    mode_t old = umask(0);
    std::string path = dir_ + "/psk";
    EXPECT_EQ(sl_key_generate(path.c_str(), nullptr), SL_OK);
    umask(old);
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(KeyFileTest, GenerateNeverOverwritesOrFollowsLinks) {
    std::string path = write("psk", kB64);
    EXPECT_EQ(sl_key_generate(path.c_str(), nullptr), SL_EKEY_EXISTS);
    uint8_t key[32];
    ASSERT_EQ(sl_key_load(path.c_str(), key), SL_OK);
    EXPECT_EQ(key[31], 31) << "existing key untouched";
    std::string link = dir_ + "/dangling";
    ASSERT_EQ(symlink((dir_ + "/elsewhere").c_str(), link.c_str()), 0);
    EXPECT_EQ(sl_key_generate(link.c_str(), nullptr), SL_EKEY_EXISTS) << "a dangling link is never followed";
    EXPECT_FALSE(fs::exists(dir_ + "/elsewhere"));
}

TEST_F(KeyFileTest, TwoGeneratedKeysDiffer) {
    uint8_t a[32], b[32];
    ASSERT_EQ(sl_key_generate((dir_ + "/a").c_str(), a), SL_OK);
    ASSERT_EQ(sl_key_generate((dir_ + "/b").c_str(), b), SL_OK);
    EXPECT_NE(hex(a, 32), hex(b, 32));
}

TEST_F(KeyFileTest, PathPrecedenceIsExplicitThenEnvThenXdgThenHome) {
    auto path = [](const char *explicit_path) {
        char buf[512];
        EXPECT_EQ(sl_key_path(explicit_path, buf, sizeof buf, nullptr), SL_OK);
        return std::string(buf);
    };
    const char *keep_home = std::getenv("HOME");
    std::string home = keep_home ? keep_home : "";
    setenv("HOME", "/home/u", 1);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("SECLINK_PSK_FILE");
    EXPECT_EQ(path(nullptr), "/home/u/.config/seclink/psk");
    setenv("XDG_CONFIG_HOME", "relative/ignored", 1);
    EXPECT_EQ(path(nullptr), "/home/u/.config/seclink/psk");
    setenv("XDG_CONFIG_HOME", "/xdg", 1);
    EXPECT_EQ(path(nullptr), "/xdg/seclink/psk");
    setenv("SECLINK_PSK_FILE", "/env/psk", 1);
    EXPECT_EQ(path(nullptr), "/env/psk");
    EXPECT_EQ(path(""), "/env/psk");
    EXPECT_EQ(path("/explicit/psk"), "/explicit/psk");
    char dir[512];
    ASSERT_EQ(sl_config_dir(dir, sizeof dir, nullptr), SL_OK);
    EXPECT_STREQ(dir, "/xdg/seclink");
    size_t needed = 0;
    char tiny[4];
    EXPECT_EQ(sl_key_path(nullptr, tiny, sizeof tiny, &needed), SL_ERANGE);
    EXPECT_EQ(needed, std::string("/env/psk").size());
    unsetenv("SECLINK_PSK_FILE");
    unsetenv("XDG_CONFIG_HOME");
    setenv("HOME", home.c_str(), 1);
}

TEST_F(KeyFileTest, NullArgumentsAreInvalid) {
    uint8_t key[32];
    EXPECT_EQ(sl_key_load(nullptr, key), SL_EINVAL);
    EXPECT_EQ(sl_key_load("x", nullptr), SL_EINVAL);
    EXPECT_EQ(sl_key_generate(nullptr, key), SL_EINVAL);
    EXPECT_EQ(sl_key_generate("", key), SL_EINVAL);
}

// ---- who may own a key file and its directory (docs/PROTOCOL.md section 6) -------------------

namespace {

constexpr uid_t kOtherUid = 12345, kThirdUid = 23456;

// Runs `fn` in a child process as kOtherUid (we run as root in CI); its return is the exit code.
template <class Fn>
int as_other_user(Fn fn) {
    pid_t pid = fork();
    if (pid == 0) _exit(setresgid(kOtherUid, kOtherUid, kOtherUid) == 0 && setresuid(kOtherUid, kOtherUid, kOtherUid) == 0
                            ? fn()
                            : 99);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int load_ex(const std::string &path, unsigned *warnings) {
    uint8_t key[32];
    *warnings = 0xFFFF;
    return sl_key_load_ex(path.c_str(), key, warnings);
}

}  // namespace

TEST_F(KeyFileTest, RootLoadsAnotherUsersKeyButIsWarned) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
    std::string path = write("psk", kB64);
    unsigned warnings = 0;
    ASSERT_EQ(load_ex(path, &warnings), SL_OK);
    EXPECT_EQ(warnings, 0u) << "our own key: nothing to say";
    ASSERT_EQ(chown(path.c_str(), kOtherUid, kOtherUid), 0);
    ASSERT_EQ(load_ex(path, &warnings), SL_OK);
    EXPECT_EQ(warnings, SL_KEY_WARN_OTHER_OWNER);
    EXPECT_EQ(load(path), SL_OK) << "sl_key_load loads it too, silently";
}

TEST_F(KeyFileTest, RootIsWarnedAboutADirectoryOfAnotherUserToo) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
    std::string path = write("psk", kB64);
    ASSERT_EQ(chown(dir_.c_str(), kOtherUid, kOtherUid), 0);
    unsigned warnings = 0;
    ASSERT_EQ(load_ex(path, &warnings), SL_OK);
    EXPECT_EQ(warnings, SL_KEY_WARN_OTHER_OWNER);
}

TEST_F(KeyFileTest, AnotherUsersKeyIsRefused) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to run a child as another user";
    ASSERT_EQ(chmod(dir_.c_str(), 0711), 0);  // the child may pass through
    std::string sub = dir_ + "/mine";
    ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
    ASSERT_EQ(chown(sub.c_str(), kOtherUid, kOtherUid), 0);
    std::string path = sub + "/psk";
    std::ofstream(path) << kB64;
    ASSERT_EQ(chmod(path.c_str(), 0600), 0);
    ASSERT_EQ(chown(path.c_str(), kOtherUid, kOtherUid), 0);
    EXPECT_EQ(as_other_user([&] { return sl_key_load(path.c_str(), std::array<uint8_t, 32>{}.data()); }), SL_OK)
        << "the owner loads it";
    ASSERT_EQ(chown(path.c_str(), kThirdUid, kThirdUid), 0);
    EXPECT_EQ(as_other_user([&] {
                  uint8_t key[32];
                  return sl_key_load(path.c_str(), key);
              }),
              SL_EKEY_OWNER);
}

TEST_F(KeyFileTest, ADirectoryOfAnotherUserIsRefused) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to run a child as another user";
    ASSERT_EQ(chmod(dir_.c_str(), 0711), 0);
    std::string sub = dir_ + "/theirs";
    ASSERT_EQ(mkdir(sub.c_str(), 0711), 0);
    ASSERT_EQ(chown(sub.c_str(), kThirdUid, kThirdUid), 0);
    std::string path = sub + "/psk";
    std::ofstream(path) << kB64;
    ASSERT_EQ(chmod(path.c_str(), 0600), 0);
    ASSERT_EQ(chown(path.c_str(), kOtherUid, kOtherUid), 0);
    EXPECT_EQ(as_other_user([&] {
                  uint8_t key[32];
                  return sl_key_load(path.c_str(), key);
              }),
              SL_EKEY_DIR)
        << "the owner of the directory could swap the key";
    ASSERT_EQ(chown(sub.c_str(), 0, 0), 0);
    EXPECT_EQ(as_other_user([&] {
                  uint8_t key[32];
                  return sl_key_load(path.c_str(), key);
              }),
              SL_OK)
        << "a directory of root's is fine (as /etc is)";
}

TEST_F(KeyFileTest, ADirectoryWritableByGroupOrOthersIsRefusedStickyOrNot) {
    std::string path = write("psk", kB64);
    for (mode_t mode : {0770, 0730, 0707, 0703, 0777, 01777, 01770}) {
        ASSERT_EQ(chmod(dir_.c_str(), mode), 0);
        EXPECT_EQ(load(path), SL_EKEY_DIR) << std::oct << mode;
    }
    for (mode_t mode : {0700, 0750, 0755, 0711}) {
        ASSERT_EQ(chmod(dir_.c_str(), mode), 0);
        EXPECT_EQ(load(path), SL_OK) << std::oct << mode;
    }
}

TEST_F(KeyFileTest, AMissingKeyInAnUnsafeDirectoryIsStillNotFound) {
    ASSERT_EQ(chmod(dir_.c_str(), 0777), 0);
    EXPECT_EQ(load(dir_ + "/nope"), SL_EKEY_NOT_FOUND);
}

TEST_F(KeyFileTest, ASymlinkedDirectoryIsJudgedByTheDirectoryItLeadsTo) {
    std::string real = dir_ + "/real", link = dir_ + "/link";
    ASSERT_EQ(mkdir(real.c_str(), 0700), 0);
    ASSERT_EQ(symlink(real.c_str(), link.c_str()), 0);
    write("real/psk", kB64);
    EXPECT_EQ(load(link + "/psk"), SL_OK);
    ASSERT_EQ(chmod(real.c_str(), 0777), 0);
    EXPECT_EQ(load(link + "/psk"), SL_EKEY_DIR) << "the real directory is checked, not the link";
    EXPECT_EQ(load(real + "/psk"), SL_EKEY_DIR);
}

TEST_F(KeyFileTest, RelativePathsAreCheckedInTheirDirectory) {
    write("psk", kB64);
    char cwd[4096];
    ASSERT_NE(getcwd(cwd, sizeof cwd), nullptr);
    ASSERT_EQ(chdir(dir_.c_str()), 0);
    EXPECT_EQ(load("psk"), SL_OK);
    ASSERT_EQ(chmod(dir_.c_str(), 0777), 0);
    EXPECT_EQ(load("psk"), SL_EKEY_DIR);
    EXPECT_EQ(load("./psk"), SL_EKEY_DIR);
    ASSERT_EQ(chdir(cwd), 0);
}

TEST_F(KeyFileTest, GenerateRefusesADirectoryTheLoaderWouldRefuse) {
    ASSERT_EQ(chmod(dir_.c_str(), 0777), 0);
    EXPECT_EQ(sl_key_generate((dir_ + "/psk").c_str(), nullptr), SL_EKEY_DIR);
    EXPECT_FALSE(fs::exists(dir_ + "/psk"));
}

TEST_F(KeyFileTest, NewKeyErrorsKeepTheirNumbersAndSayWhatToDo) {
    EXPECT_EQ(SL_EKEY_OWNER, 37);
    EXPECT_EQ(SL_EKEY_DIR, 38);
    EXPECT_STREQ(sl_errname(SL_EKEY_OWNER), "KEY_OWNER");
    EXPECT_STREQ(sl_errname(SL_EKEY_DIR), "KEY_DIR");
    EXPECT_NE(std::string(sl_strerror(SL_EKEY_DIR)).find("chmod go-w"), std::string::npos);
    unsigned warnings = 7;
    EXPECT_EQ(sl_key_load_ex(nullptr, nullptr, &warnings), SL_EINVAL);
    EXPECT_EQ(warnings, 0u);
}
