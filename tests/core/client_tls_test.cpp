// The native client over TLS when the server goes away: an error code, never SIGPIPE. The client
// runs in a child process with SIGPIPE at its default disposition (what a C program has unless
// it changes it), so a signal would kill the child and show in its wait status.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "test_util.hpp"

using namespace sltest;

namespace {

const auto kPsk = key_of(0x3d);

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/seclink-tls-XXXXXX";
        path = mkdtemp(tmpl) != nullptr ? tmpl : "";
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

// A listening socket on 127.0.0.1 with a kernel-chosen port.
int listen_local(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || listen(fd, 1) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

// The client side, run in the child: connects over TLS, sends a message far larger than the
// socket buffers, then closes. Exits with sl_client_send's result (or 100 + connect's).
[[noreturn]] void run_client(uint16_t port, const std::string &ca) {
    signal(SIGPIPE, SIG_DFL);
    sl_client_config cfg;
    sl_client_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = port;
    cfg.psk = kPsk.data();
    cfg.tls = 1;
    cfg.tls_ca = ca.c_str();
    cfg.timeout_ms = 10000;
    cfg.max_message = 64u << 20;
    sl_client *c = nullptr;
    int rc = sl_client_connect(&c, &cfg);
    if (rc != SL_OK) _exit(100 + rc);
    std::vector<uint8_t> big(cfg.max_message, 0x42);
    rc = sl_client_send(c, SL_MSG_DATA, big.data(), big.size());
    sl_client_close(c, "bye");  // writes a CLOSE and a TLS close_notify to a dead socket
    sl_client_free(c);
    _exit(rc);
}

}  // namespace

TEST(ClientTlsTest, ServerGoingAwayDuringASendIsAnErrorNotSigpipe) {
    TempDir dir;
    ASSERT_FALSE(dir.path.empty());
    const std::string cert = dir.path + "/cert.pem", key = dir.path + "/key.pem";
    ASSERT_EQ(sl_tls_ensure_self_signed(cert.c_str(), key.c_str(), nullptr), SL_OK);
    uint16_t port = 0;
    const int lfd = listen_local(&port);
    ASSERT_GE(lfd, 0);

    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) run_client(port, cert);

    // The server: TLS, the seclink handshake, one record of the message, then gone (close with
    // unread data: a reset).
    pollfd p{lfd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 10000), 1);
    const int fd = accept(lfd, nullptr, nullptr);
    close(lfd);
    ASSERT_GE(fd, 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    ASSERT_NE(ctx, nullptr);
    ASSERT_EQ(SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM), 1);
    SSL *ssl = SSL_new(ctx);
    ASSERT_EQ(SSL_set_fd(ssl, fd), 1);
    ASSERT_EQ(SSL_accept(ssl), 1);
    sl_conn *conn = nullptr;
    ASSERT_EQ(sl_conn_new(&conn, SL_SERVER, kPsk.data()), SL_OK);
    ASSERT_EQ(sl_conn_start(conn), SL_OK);
    uint8_t buf[16384];
    bool done = false;
    while (!done) {
        const int n = SSL_read(ssl, buf, sizeof buf);
        ASSERT_GT(n, 0);
        for (size_t off = 0; off < static_cast<size_t>(n);) {
            size_t used = 0;
            sl_event ev{};
            ASSERT_EQ(sl_conn_feed(conn, buf + off, static_cast<size_t>(n) - off, &used, &ev), SL_OK);
            off += used;
            done = done || ev.type == SL_EVENT_HANDSHAKE_DONE;
        }
    }
    const uint8_t *out = nullptr;
    size_t out_len = 0;
    ASSERT_EQ(sl_conn_pending(conn, &out, &out_len), SL_OK);
    ASSERT_EQ(SSL_write(ssl, out, static_cast<int>(out_len)), static_cast<int>(out_len));
    ASSERT_GT(SSL_read(ssl, buf, sizeof buf), 0);  // the message has started to arrive
    close(fd);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    sl_conn_free(conn);

    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_FALSE(WIFSIGNALED(status)) << "the client was killed by signal " << WTERMSIG(status)
                                      << (WTERMSIG(status) == SIGPIPE ? " (SIGPIPE)" : "");
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), SL_EPEER_CLOSED) << sl_errname(WEXITSTATUS(status));
}
