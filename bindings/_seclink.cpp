// _seclink.cpp - the pybind11 module seclink._seclink: a thin layer over the C ABI (seclink.h).
//
// It does three things only; the Pythonic API is written in Python on top (python/seclink/):
//  - type conversion: bytes-like objects in, bytes/str/tuples out;
//  - GIL handling: released around every call that blocks or encrypts, taken back only to build
//    Python objects or to call Python code (handlers, log and trace callbacks);
//  - error mapping: every sl_err becomes the matching seclink.errors exception, built by
//    seclink.errors.from_code() so the hierarchy lives in one place (Python).
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <openssl/crypto.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server_settings.hpp"
#include "seclink/seclink.h"

namespace py = pybind11;

namespace {

// Raises seclink.errors.from_code(code, context, peer). Needs the GIL.
[[noreturn]] void raise_error(int code, const std::string &context = {}, const std::string &peer = {}) {
    py::object exc = py::module_::import("seclink.errors").attr("from_code")(code, context, peer);
    PyErr_SetObject(reinterpret_cast<PyObject *>(Py_TYPE(exc.ptr())), exc.ptr());
    throw py::error_already_set();
}

// Like raise_error, the exception also carrying what a server said about itself (PROTOCOL.md 14):
// `server_key` (bytes or None) and `server_modes` (a list of mode numbers).
[[noreturn]] void raise_with_server_info(int code, const std::string &context, const std::string &peer,
                                         const uint8_t *server_key, unsigned modes) {
    py::object exc = py::module_::import("seclink.errors").attr("from_code")(code, context, peer);
    exc.attr("server_key") = server_key != nullptr ? py::object(py::bytes(reinterpret_cast<const char *>(server_key), 32))
                                                   : py::object(py::none());
    py::list m;
    for (int i = 1; i < 32; ++i)
        if (modes & (1u << i)) m.append(std::string(sl_mode_name(i)));
    exc.attr("server_modes") = m;
    PyErr_SetObject(reinterpret_cast<PyObject *>(Py_TYPE(exc.ptr())), exc.ptr());
    throw py::error_already_set();
}

void check(int rc, const std::string &context = {}, const std::string &peer = {}) {
    if (rc != SL_OK) raise_error(rc, context, peer);
}

// The content of any bytes-like object, exactly as bytes(obj) gives it: all its nbytes, in C
// order, whatever its format, itemsize or shape. A non-contiguous view (a reversed or strided
// memoryview) is copied into contiguous storage: its pointer with size*itemsize would be the
// wrong bytes, or bytes from beyond the buffer. Held for as long as this lives, so it may be used
// with the GIL released; it must be destroyed with the GIL held.
class Bytes {
public:
    explicit Bytes(const py::buffer &b) {
        if (PyObject_GetBuffer(b.ptr(), &view_, PyBUF_FULL_RO) != 0) throw py::error_already_set();
        if (PyBuffer_IsContiguous(&view_, 'C')) return;
        copy_.resize(static_cast<size_t>(view_.len));
        if (PyBuffer_ToContiguous(copy_.data(), &view_, view_.len, 'C') != 0) {
            PyBuffer_Release(&view_);
            throw py::error_already_set();
        }
    }
    ~Bytes() {
        if (!copy_.empty()) OPENSSL_cleanse(copy_.data(), copy_.size());  // it may hold a key
        PyBuffer_Release(&view_);
    }
    Bytes(const Bytes &) = delete;
    Bytes &operator=(const Bytes &) = delete;

    const uint8_t *data() const { return copy_.empty() ? static_cast<const uint8_t *>(view_.buf) : copy_.data(); }
    size_t size() const { return static_cast<size_t>(view_.len); }

private:
    Py_buffer view_{};
    std::vector<uint8_t> copy_;
};

py::bytes to_bytes(const uint8_t *data, size_t len) {
    return {reinterpret_cast<const char *>(data), len};
}

std::array<uint8_t, SL_KEY_BYTES> key_from(const py::buffer &psk) {
    Bytes b(psk);
    if (b.size() != SL_KEY_BYTES)
        throw py::value_error("a pre-shared key is exactly " + std::to_string(SL_KEY_BYTES) + " bytes, not " +
                              std::to_string(b.size()));
    std::array<uint8_t, SL_KEY_BYTES> k{};
    std::memcpy(k.data(), b.data(), k.size());
    return k;
}

void wipe(std::array<uint8_t, SL_KEY_BYTES> &k) { OPENSSL_cleanse(k.data(), k.size()); }


std::string format_frame(const sl_frame_info *f, const char *peer) {
    std::string out(64 * 1024, '\0');
    out.resize(sl_format_frame(f, peer, out.data(), out.size()));
    return out;
}

// Calls a Python callable from a native thread (or with the GIL released); an exception it
// raises is reported as unraisable rather than lost or propagated through C.
template <class... A>
void call_python(const py::object &fn, const char *what, A &&...args) {
    py::gil_scoped_acquire gil;
    try {
        fn(std::forward<A>(args)...);
    } catch (py::error_already_set &e) {
        e.discard_as_unraisable(what);
    }
}

// ---------------------------------------------------------------------------------- Connection

// The sans-I/O engine. One object must not be used by two threads at once: with the GIL released
// that would be a data race, so it is refused with RuntimeError instead.
class Connection {
public:
    Connection(int role, const py::buffer &psk, std::optional<size_t> max_message, std::optional<size_t> max_send,
               std::optional<py::buffer> ephemeral) {
        auto k = key_from(psk);
        int rc = sl_conn_new(&c_, static_cast<sl_role>(role), k.data());
        wipe(k);
        check(rc, "cannot create a connection");
        if (max_message) check(sl_conn_set_max_message(c_, *max_message), "max_message");
        if (max_send) check(sl_conn_set_max_send(c_, *max_send), "max_send");
        if (ephemeral) {
            Bytes e(*ephemeral);
            if (e.size() != 32) throw py::value_error("an X25519 private key is 32 bytes");
            check(sl_conn_set_ephemeral_for_testing(c_, e.data()));
        }
    }
    ~Connection() { sl_conn_free(c_); }
    Connection(const Connection &) = delete;
    Connection &operator=(const Connection &) = delete;

    void start() {
        Lock lock(this);
        check(sl_conn_start(c_), "cannot start the handshake");
    }

    void set_key_confirmation(bool on) {
        Lock lock(this);
        check(sl_conn_set_key_confirmation(c_, on ? 1 : 0), "key_confirmation");
    }

    void set_psks(const py::buffer &psks) {
        Lock lock(this);
        seclink_py::KeyList k(psks, std::nullopt);
        check(sl_conn_set_psks(c_, k.keys.data(), k.count()), "psks");
    }
    int psk_index() const { return sl_conn_psk_index(c_); }

    void rekey() {
        Lock lock(this);
        check(sl_conn_rekey(c_), "rekey");
    }
    void set_mode(int mode) {
        Lock lock(this);
        check(sl_conn_set_mode(c_, mode), "mode");
    }
    void set_server_key(const py::buffer &pub) {
        Lock lock(this);
        Bytes k(pub);
        if (k.size() != 32) throw py::value_error("a server key is 32 bytes");
        check(sl_conn_set_server_key(c_, k.data()), "server_key");
    }
    void set_static_key(const py::buffer &priv) {
        Lock lock(this);
        Bytes k(priv);
        if (k.size() != 32) throw py::value_error("a static key is 32 bytes");
        check(sl_conn_set_static_key(c_, k.data()), "static_key");
    }
    void set_login(const std::string &user, const py::buffer &password) {
        Lock lock(this);
        Bytes pw(password);
        check(sl_conn_set_login(c_, user.c_str(), pw.data(), pw.size()), "login");
    }
    void set_accepted_modes(unsigned mask) {
        Lock lock(this);
        check(sl_conn_set_accepted_modes(c_, mask), "accepted_modes");
    }
    py::object server_key() const {
        uint8_t k[32];
        if (sl_conn_server_key(c_, k) != SL_OK) return py::none();
        return to_bytes(k, 32);
    }
    unsigned server_modes() const { return sl_conn_server_modes(c_); }
    void set_rekey_bytes(uint64_t n) {
        Lock lock(this);
        check(sl_conn_set_rekey_bytes(c_, n), "rekey_bytes");
    }
    py::tuple rekeys() const {
        uint64_t sent = 0, received = 0;
        sl_conn_rekeys(c_, &sent, &received);
        return py::make_tuple(sent, received);
    }

    // Feeds `data` from `offset` up to the next event only; returns (event or None, new offset,
    // error). What a caller queues for that event comes before anything a later frame causes.
    py::tuple feed_one(const py::buffer &data, size_t offset) {
        Lock lock(this);
        Bytes in(data);
        if (offset > in.size()) throw py::value_error("offset beyond the data");
        int rc = SL_OK;
        while (offset < in.size()) {
            sl_event ev{};
            size_t used = 0;
            {
                py::gil_scoped_release nogil;
                rc = sl_conn_feed(c_, in.data() + offset, in.size() - offset, &used, &ev);
            }
            offset += used;
            if (rc != SL_OK) break;
            if (ev.type != SL_EVENT_NONE)
                return py::make_tuple(py::make_tuple(ev.type, ev.msg_type, to_bytes(ev.data, ev.len)), offset, rc);
            if (used == 0) break;  // cannot happen; never spin
        }
        return py::make_tuple(py::none(), offset, rc);
    }

    int feed_eof() {
        Lock lock(this);
        return sl_conn_feed_eof(c_);
    }

    void send(int msg_type, const py::buffer &data) {
        Lock lock(this);
        Bytes in(data);
        int rc;
        {
            py::gil_scoped_release nogil;
            rc = sl_conn_send(c_, msg_type, in.data(), in.size());
        }
        check(rc);
    }

    // Everything queued for the wire, marked as written.
    py::bytes data_to_send() {
        Lock lock(this);
        const uint8_t *p = nullptr;
        size_t n = 0;
        sl_conn_pending(c_, &p, &n);
        py::bytes out = to_bytes(p, n);
        sl_conn_consume(c_, n);
        return out;
    }

    size_t pending_size() const { return sl_conn_pending_size(c_); }
    bool established() const { return sl_conn_is_established(c_) != 0; }
    bool closed() const { return sl_conn_is_closed(c_) != 0; }

    py::bytes handshake_hash() const {
        uint8_t h[SL_HASH_BYTES];
        check(sl_conn_handshake_hash(c_, h));
        return to_bytes(h, sizeof h);
    }

    // fn(text) for every frame, text as sl_format_frame writes it for `peer`; None: off.
    void set_trace(py::object fn, std::string peer) {
        Lock lock(this);
        trace_fn_ = std::move(fn);
        trace_peer_ = std::move(peer);
        check(sl_conn_set_trace(c_, trace_fn_.is_none() ? nullptr : &Connection::on_frame, this));
    }

private:
    struct Lock {
        explicit Lock(Connection *c) : c_(c) {
            if (!c_->mu_.try_lock())
                throw std::runtime_error("a seclink Connection was used from two threads at once");
        }
        ~Lock() { c_->mu_.unlock(); }
        Connection *c_;
    };
    static void on_frame(void *ud, const sl_frame_info *f) {
        auto *self = static_cast<Connection *>(ud);
        call_python(self->trace_fn_, "seclink trace callback", format_frame(f, self->trace_peer_.c_str()));
    }

    sl_conn *c_ = nullptr;
    std::mutex mu_;
    py::object trace_fn_ = py::none();
    std::string trace_peer_;
};

// ---------------------------------------------------------------------------------- Server

// The native multi-threaded server. Python callables (handler, log) are called on its worker
// threads with the GIL held for the call only; with neither, no worker ever takes the GIL.
class Server {
public:
    // Keyword arguments: ServerSettings' (server_settings.hpp), then host, port, threads, tls,
    // tls_cert, tls_key, log and handler.
    Server(const py::buffer &psk, py::kwargs kwargs) {
        seclink_py::Kwargs kw(std::move(kwargs));
        seclink_py::ServerSettings settings(psk, kw);
        sl_server_config &cfg = settings.cfg;
        host_ = kw.get<std::string>("host", cfg.host ? cfg.host : "0.0.0.0");
        const uint16_t port = kw.get<uint16_t>("port", 0);
        cfg.host = host_.c_str();
        cfg.port = port;
        cfg.threads = kw.get<unsigned>("threads", cfg.threads);
        cfg.tls = kw.get<bool>("tls", false);
        cert_ = kw.get<std::string>("tls_cert", "");
        key_ = kw.get<std::string>("tls_key", "");
        cfg.tls_cert = cert_.c_str();
        cfg.tls_key = key_.c_str();
        log_ = kw.take("log");
        handler_ = kw.take("handler");
        kw.done();
        if (!log_.is_none()) {
            cfg.log = &Server::on_log;
            cfg.log_ud = this;
        }
        if (!handler_.is_none()) {
            cfg.handler = &Server::on_message;
            cfg.handler_ud = this;
        }
        int rc = sl_server_new(&s_, &cfg);
        if (rc == SL_EINVAL && settings.has_cluster()) throw py::value_error(settings.cluster_problem());
        check(rc, "cannot listen on " + host_ + ":" + std::to_string(port));
    }
    ~Server() {
        py::gil_scoped_release nogil;  // workers may be waiting for the GIL to finish a call
        sl_server_free(s_);
    }
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;

    uint16_t port() const { return sl_server_port(s_); }
    size_t sessions() const { return sl_server_sessions(s_); }
    void start() { check(sl_server_start(s_), "cannot start the server"); }
    void stop() { sl_server_stop(s_); }
    void wait() {
        py::gil_scoped_release nogil;
        sl_server_wait(s_);
    }
    void reload_users() {
        int rc;
        {
            py::gil_scoped_release nogil;  // it logs, and the log callback takes the GIL
            rc = sl_server_reload_users(s_);
        }
        check(rc, "authorized keys");
    }

private:
    static void on_log(void *ud, int level, const char *line) {
        call_python(static_cast<Server *>(ud)->log_, "seclink server log callback", level, std::string(line));
    }
    static int on_message(void *ud, const char *peer, const uint8_t *data, size_t len, sl_buf *reply) {
        auto *self = static_cast<Server *>(ud);
        py::gil_scoped_acquire gil;
        std::string why;
        try {
            py::object r = self->handler_(std::string(peer), to_bytes(data, len));
            if (r.is_none()) return 0;  // an empty reply
            Bytes out(r.cast<py::buffer>());
            int rc;
            {
                py::gil_scoped_release nogil;
                rc = sl_buf_append(reply, out.data(), out.size());
            }
            if (rc == SL_OK) return 0;
            why = std::string("reply refused: ") + sl_strerror(rc);
        } catch (py::error_already_set &e) {
            why = std::string(py::str(e.type().attr("__name__"))) + ": " + std::string(py::str(e.value()));
        } catch (std::exception &e) {
            why = std::string("handler returned an unusable reply: ") + e.what();
        }
        sl_buf_append(reply, reinterpret_cast<const uint8_t *>(why.data()), why.size());
        return 1;
    }

    sl_server *s_ = nullptr;
    std::string host_, cert_, key_;
    py::object log_, handler_;
};

// ---------------------------------------------------------------------------------- Client

// Takes turns on one native object among threads, first come first served. An sl_client is not
// thread-safe (one engine, one send buffer and counter, one SSL*), so every call into it holds a
// turn. FIFO matters: recv() gives its turn back between its short waits, and a send() queued
// behind it must get in then, not lose the race to recv() taking it again. Waiting releases the
// GIL (the holder may need it) and checks for signals, so Ctrl-C interrupts a waiting thread.
class Turns {
public:
    class Turn {
    public:
        explicit Turn(Turns &t) : t_(t) { t_.acquire(); }
        ~Turn() { t_.release(); }
        Turn(const Turn &) = delete;
        Turn &operator=(const Turn &) = delete;

    private:
        Turns &t_;
    };

private:
    // Needs the GIL. m_ is never held while waiting for the GIL, so taking it with the GIL is safe.
    void acquire() {
        uint64_t ticket;
        {
            std::lock_guard<std::mutex> l(m_);
            if (owner_ == std::this_thread::get_id())  // it would wait for itself
                throw std::runtime_error("a seclink Client was called from its own trace callback");
            ticket = next_++;
            if (serving_ == ticket) {  // nobody holds it or waits: no need to let go of the GIL
                owner_ = std::this_thread::get_id();
                return;
            }
        }
        for (;;) {
            bool mine;
            {
                py::gil_scoped_release nogil;
                std::unique_lock<std::mutex> l(m_);
                mine = cv_.wait_for(l, std::chrono::milliseconds(50), [&] { return serving_ == ticket; });
                if (mine) owner_ = std::this_thread::get_id();
            }
            if (mine) return;
            if (PyErr_CheckSignals() != 0) {
                withdraw(ticket);
                throw py::error_already_set();
            }
        }
    }
    void release() {
        {
            std::lock_guard<std::mutex> l(m_);
            owner_ = {};
            advance();
        }
        cv_.notify_all();
    }
    void withdraw(uint64_t ticket) {
        {
            std::lock_guard<std::mutex> l(m_);
            if (serving_ != ticket) {
                withdrawn_.insert(ticket);
                return;
            }
            advance();  // its turn came just as it gave up
        }
        cv_.notify_all();
    }
    void advance() {
        ++serving_;
        while (withdrawn_.erase(serving_) != 0) ++serving_;
    }

    std::mutex m_;
    std::condition_variable cv_;
    uint64_t next_ = 0, serving_ = 0;  // tickets handed out, ticket whose turn it is
    std::set<uint64_t> withdrawn_;     // waiters interrupted by a signal before their turn
    std::thread::id owner_;            // the thread whose turn it is, if any
};

// The native blocking client, safe to share between threads: each call takes a turn (above).
// Every blocking call releases the GIL; recv() waits in short slices, each its own turn, and
// checks for signals between them, so Ctrl-C interrupts it promptly and other threads may send
// while it waits.
class Client {
public:
    Client(const py::buffer &psk, std::string host, uint16_t port, unsigned timeout_ms, size_t max_message,
           py::object trace, bool tls, std::optional<std::string> tls_ca, std::optional<std::string> tls_pin,
           std::optional<std::string> tls_trust_dir, uint64_t rekey_bytes, int mode,
           std::optional<py::buffer> server_key, std::optional<py::buffer> identity, std::optional<std::string> user,
           std::optional<py::buffer> password)
        : trace_(std::move(trace)) {
        auto k = key_from(psk);
        sl_client_config cfg;
        sl_client_config_init(&cfg);
        cfg.host = host.c_str();
        cfg.port = port;
        cfg.psk = k.data();
        cfg.timeout_ms = timeout_ms;
        cfg.max_message = max_message;
        cfg.rekey_bytes = rekey_bytes;
        cfg.mode = mode;
        std::optional<Bytes> expected;
        if (server_key) {
            expected.emplace(*server_key);
            if (expected->size() != 32) throw py::value_error("a server key is 32 bytes");
            cfg.server_key = expected->data();
        }
        std::optional<Bytes> ident;
        if (identity) {
            ident.emplace(*identity);
            if (ident->size() != 32) throw py::value_error("an identity is a 32-byte private key");
            cfg.identity = ident->data();
        }
        std::optional<Bytes> pw;
        if (user) {
            cfg.user = user->c_str();
            if (password) {
                pw.emplace(*password);
                cfg.password = pw->data();
                cfg.password_len = pw->size();
            }
        }
        uint8_t seen[32] = {};
        unsigned modes_seen = 0;
        cfg.server_key_seen = seen;
        cfg.server_modes_seen = &modes_seen;
        if (!trace_.is_none()) {
            cfg.trace = 1;
            cfg.log = &Client::on_log;
            cfg.log_ud = this;
        }
        cfg.tls = tls;
        cfg.tls_ca = tls_ca ? tls_ca->c_str() : nullptr;
        cfg.tls_pin = tls_pin ? tls_pin->c_str() : nullptr;
        cfg.tls_trust_dir = tls_trust_dir ? tls_trust_dir->c_str() : nullptr;
        int rc;
        {
            py::gil_scoped_release nogil;
            rc = sl_client_connect(&c_, &cfg);
        }
        wipe(k);
        static const uint8_t none[32] = {};
        const bool saw_key = std::memcmp(seen, none, 32) != 0;
        if (saw_key) server_key_ = std::string(reinterpret_cast<const char *>(seen), 32);
        if (rc != SL_OK && (saw_key || modes_seen != 0))
            raise_with_server_info(rc, "cannot connect", host + ":" + std::to_string(port), saw_key ? seen : nullptr,
                                   modes_seen);
        check(rc, "cannot connect", host + ":" + std::to_string(port));
    }
    ~Client() { sl_client_free(c_); }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    std::string peer() const { return sl_client_peer(c_); }
    py::object server_key() const { return server_key_.empty() ? py::object(py::none()) : py::object(py::bytes(server_key_)); }

    void rekey() {
        int rc;
        {
            Turns::Turn turn(turns_);
            py::gil_scoped_release nogil;
            rc = sl_client_rekey(c_);
        }
        check(rc, "rekey", peer());
    }

    void send(int msg_type, const py::buffer &data) {
        Bytes in(data);
        int rc;
        {
            Turns::Turn turn(turns_);
            py::gil_scoped_release nogil;
            rc = sl_client_send(c_, msg_type, in.data(), in.size());
        }
        check(rc, "send", peer());
    }

    // (msg_type, content) of the next DATA, PONG or CLOSE; timeout_ms < 0 waits forever.
    py::tuple recv(int timeout_ms) {
        constexpr int kSliceMs = 50;
        for (int left = timeout_ms;;) {
            const int slice = (left < 0 || left > kSliceMs) ? kSliceMs : left;
            int type = 0, rc;
            {
                Turns::Turn turn(turns_);
                const uint8_t *data = nullptr;  // valid until the next call: copied within this turn
                size_t len = 0;
                {
                    py::gil_scoped_release nogil;
                    rc = sl_client_recv(c_, slice, &type, &data, &len);
                }
                if (rc == SL_OK) return py::make_tuple(type, to_bytes(data, len));
            }
            if (rc != SL_ETIMEDOUT || left == slice) check(rc, "recv", peer());
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            if (left > 0) left -= slice;
        }
    }

    // File transfer (PROTOCOL.md 10): (rc, size, resumed_from, sha256, remote_code, message);
    // `progress(done, total)` is called with the GIL, between chunks.
    py::tuple transfer(bool upload, const std::string &a, std::optional<std::string> b, bool overwrite,
                       py::object progress) {
        sl_file_result r{};
        int rc;
        struct Ctx {
            py::object fn;
            bool failed = false;
        } ctx{std::move(progress)};
        auto cb = [](void *ud, uint64_t done, uint64_t total) {
            auto *x = static_cast<Ctx *>(ud);
            py::gil_scoped_acquire gil;
            if (x->failed) return;
            try {
                x->fn(done, total);
            } catch (py::error_already_set &e) {
                x->failed = true;  // reported after the transfer: the callback cannot stop it
                e.discard_as_unraisable("seclink progress callback");
            }
        };
        {
            Turns::Turn turn(turns_);
            py::gil_scoped_release nogil;
            sl_progress_fn fn = ctx.fn.is_none() ? nullptr : static_cast<sl_progress_fn>(cb);
            rc = upload ? sl_client_send_file(c_, a.c_str(), b ? b->c_str() : nullptr, fn, &ctx, &r)
                        : sl_client_get_file(c_, a.c_str(), b ? b->c_str() : nullptr, overwrite, fn, &ctx, &r);
        }
        return py::make_tuple(rc, r.size, r.resumed_from, py::bytes(reinterpret_cast<const char *>(r.sha256), 32),
                              r.remote_code, std::string(r.message));
    }

    // Full duplex (pipe mode): queue, flush what fits, poll the descriptor (seclink.h).
    void queue(int msg_type, const py::buffer &data) {
        Bytes in(data);
        Turns::Turn turn(turns_);
        check(sl_client_queue(c_, msg_type, in.data(), in.size()), "send", peer());
    }
    bool flush(int timeout_ms) {  // True once everything queued is written
        int rc;
        {
            Turns::Turn turn(turns_);
            py::gil_scoped_release nogil;
            rc = sl_client_flush(c_, timeout_ms);
        }
        if (rc == SL_ETIMEDOUT) return false;
        check(rc, "send", peer());
        return true;
    }
    size_t pending() const { return sl_client_pending(c_); }
    int fd() const { return sl_client_fd(c_); }
    // (msg_type, content) of a message already arrived, or None (never waits).
    py::object poll_message() {
        Turns::Turn turn(turns_);
        int type = 0;
        const uint8_t *data = nullptr;
        size_t len = 0;
        int rc = sl_client_recv(c_, 0, &type, &data, &len);
        if (rc == SL_ETIMEDOUT) return py::none();
        check(rc, "recv", peer());
        return py::make_tuple(type, to_bytes(data, len));
    }

    void close(const std::optional<std::string> &reason) {
        int rc;
        {
            Turns::Turn turn(turns_);
            py::gil_scoped_release nogil;
            rc = sl_client_close(c_, reason ? reason->c_str() : nullptr);
        }
        check(rc, "close", peer());
    }

private:
    static void on_log(void *ud, int, const char *line) {
        call_python(static_cast<Client *>(ud)->trace_, "seclink client trace callback", std::string(line));
    }
    sl_client *c_ = nullptr;
    py::object trace_;
    std::string server_key_;  // the static key a mode-2 server sent
    Turns turns_;
};

// ---------------------------------------------------------------------------------- functions

template <class F>
std::string path_from(F fn) {
    std::vector<char> buf(4096);
    size_t needed = 0;
    int rc = fn(buf.data(), buf.size(), &needed);
    if (rc == SL_ERANGE) {
        buf.resize(needed + 1);
        rc = fn(buf.data(), buf.size(), &needed);
    }
    check(rc, "cannot work out the path (set HOME)");
    return buf.data();
}

}  // namespace

void bind_session(py::module_ &m);  // session.cpp

PYBIND11_MODULE(_seclink, m) {
    m.doc() = "Thin bindings to libseclink's C ABI; use the seclink package, not this module.";

    bind_session(m);
    m.def("version", &sl_version);
    m.def("default_threads", &sl_server_default_threads);
    m.def("strerror", &sl_strerror, py::arg("code"));
    m.def("errname", &sl_errname, py::arg("code"));
    m.def("file_code_name", &sl_file_code_name, py::arg("code"));
    m.def("file_name_valid", [](const std::string &n) { return sl_file_name_valid(n.c_str()) != 0; }, py::arg("name"));
    m.def("chat_cluster_available", [] { return sl_chat_cluster_available() != 0; });
    m.def(
        "chat_text_ok",
        [](const py::bytes &data) {
            std::string d = data;
            return sl_chat_text_ok(reinterpret_cast<const uint8_t *>(d.data()), d.size()) != 0;
        },
        py::arg("data"));
    m.def("err_category", &sl_err_category, py::arg("code"));
    m.def("last_os_error", &sl_last_os_error);
    // Every sl_err by name, read from the core's table: seclink.errors makes the Err IntEnum of it.
    py::dict errors;
    for (int code = 0; code < 256; ++code)
        if (std::string(sl_errname(code)) != "UNKNOWN") errors[sl_errname(code)] = code;
    m.attr("ERRORS") = errors;
    m.attr("CATEGORIES") = py::dict(py::arg("OK") = int{SL_CAT_OK}, py::arg("INTERNAL") = int{SL_CAT_INTERNAL},
                                    py::arg("USAGE") = int{SL_CAT_USAGE}, py::arg("KEY") = int{SL_CAT_KEY},
                                    py::arg("NETWORK") = int{SL_CAT_NETWORK}, py::arg("HANDSHAKE") = int{SL_CAT_HANDSHAKE},
                                    py::arg("TLS") = int{SL_CAT_TLS}, py::arg("SESSION") = int{SL_CAT_SESSION},
                                    py::arg("TOO_LARGE") = int{SL_CAT_TOO_LARGE});
    m.attr("MESSAGE_TYPES") = py::dict(py::arg("DATA") = int{SL_MSG_DATA}, py::arg("CLOSE") = int{SL_MSG_CLOSE},
                                       py::arg("PING") = int{SL_MSG_PING}, py::arg("PONG") = int{SL_MSG_PONG},
                                       py::arg("KEY_UPDATE") = int{SL_MSG_KEY_UPDATE},
                                       py::arg("EOF") = int{SL_MSG_EOF});

    m.attr("KEY_BYTES") = SL_KEY_BYTES;
    m.attr("PREFIX_BYTES") = SL_PREFIX_BYTES;
    m.attr("IV_BYTES") = SL_IV_BYTES;
    m.attr("TAG_BYTES") = SL_TAG_BYTES;
    m.attr("OVERHEAD_BYTES") = SL_OVERHEAD_BYTES;
    m.attr("MAX_PING") = SL_MAX_PING;
    m.attr("MAX_PSKS") = SL_MAX_PSKS;
    m.attr("DEFAULT_REKEY_BYTES") = static_cast<uint64_t>(SL_DEFAULT_REKEY_BYTES);
    m.attr("MODE_PSK") = int{SL_MODE_PSK};
    m.attr("MODE_SERVER_KEY") = int{SL_MODE_SERVER_KEY};
    m.def("mode_name", [](int mode) { return std::string(sl_mode_name(mode)); }, py::arg("mode"));
    m.def("key_public", [](const py::buffer &priv) {
        Bytes k(priv);
        if (k.size() != 32) throw py::value_error("a private key is 32 bytes");
        uint8_t pub[32];
        check(sl_key_public(k.data(), pub));
        return to_bytes(pub, 32);
    }, py::arg("priv"));
    m.def("key_fingerprint", [](const py::buffer &pub) {
        Bytes k(pub);
        if (k.size() != 32) throw py::value_error("a public key is 32 bytes");
        char buf[SL_FINGERPRINT_CHARS + 1];
        check(sl_key_fingerprint(k.data(), buf, sizeof buf));
        return std::string(buf);
    }, py::arg("pub"));
    m.def("fingerprint_matches", [](const std::string &text, const py::buffer &pub) {
        Bytes k(pub);
        return k.size() == 32 && sl_fingerprint_matches(text.c_str(), k.data()) == 1;
    }, py::arg("text"), py::arg("pub"));
    m.def("known_servers_lookup", [](const std::string &path, const std::string &host_port) -> py::object {
        uint8_t pub[32];
        unsigned line = 0;
        int rc = sl_known_servers_lookup(path.c_str(), host_port.c_str(), pub, &line);
        if (rc == SL_ESERVER_KEY_UNKNOWN) return py::none();
        check(rc, "known servers file " + path);
        return py::make_tuple(to_bytes(pub, 32), line);
    }, py::arg("path"), py::arg("host_port"));
    m.def("known_servers_add", [](const std::string &path, const std::string &host_port, const py::buffer &pub) {
        Bytes k(pub);
        if (k.size() != 32) throw py::value_error("a public key is 32 bytes");
        check(sl_known_servers_add(path.c_str(), host_port.c_str(), k.data()), "known servers file " + path);
    }, py::arg("path"), py::arg("host_port"), py::arg("pub"));
    m.def("users_add", [](const std::string &path, const std::string &user, const py::buffer &password) {
        Bytes pw(password);
        int rc;
        {
            py::gil_scoped_release nogil;  // scrypt takes a while
            rc = sl_users_add(path.c_str(), user.c_str(), pw.data(), pw.size());
        }
        check(rc, "users file " + path);
    }, py::arg("path"), py::arg("user"), py::arg("password"));
    m.def("known_servers_path", []() {
        char buf[4096];
        check(sl_known_servers_path(buf, sizeof buf, nullptr), "known servers file");
        return std::string(buf);
    });
    m.attr("DEFAULT_MAX_MESSAGE") = SL_DEFAULT_MAX_MESSAGE;
    m.attr("DEFAULT_TIMEOUT_MS") = SL_DEFAULT_TIMEOUT_MS;
    m.attr("MAX_MESSAGE_LIMIT") = SL_MAX_MESSAGE_LIMIT;
    m.attr("PROTOCOL_VERSION") = SL_PROTOCOL_VERSION;
    m.attr("LOG_ERROR") = static_cast<int>(SL_LOG_ERROR);
    m.attr("LOG_WARN") = static_cast<int>(SL_LOG_WARN);
    m.attr("LOG_INFO") = static_cast<int>(SL_LOG_INFO);
    m.attr("LOG_MSG") = static_cast<int>(SL_LOG_MSG);
    m.attr("LOG_TRACE") = static_cast<int>(SL_LOG_TRACE);

    m.def("key_load", [](const std::string &path) {
        std::array<uint8_t, SL_KEY_BYTES> k{};
        check(sl_key_load(path.c_str(), k.data()), path);
        py::bytes out = to_bytes(k.data(), k.size());
        wipe(k);
        return out;
    }, py::arg("path"));
    m.def("key_load_ex", [](const std::string &path) {
        std::array<uint8_t, SL_KEY_BYTES> k{};
        unsigned warnings = 0;
        check(sl_key_load_ex(path.c_str(), k.data(), &warnings), path);
        // A bytearray, unlike bytes, can be wiped by the Python code that holds it.
        py::bytearray out(reinterpret_cast<const char *>(k.data()), k.size());
        wipe(k);
        return py::make_tuple(out, warnings);
    }, py::arg("path"));
    m.attr("KEY_WARN_OTHER_OWNER") = SL_KEY_WARN_OTHER_OWNER;
    m.def("key_generate", [](const std::string &path) {
        std::array<uint8_t, SL_KEY_BYTES> k{};
        check(sl_key_generate(path.c_str(), k.data()), path);
        py::bytes out = to_bytes(k.data(), k.size());
        wipe(k);
        return out;
    }, py::arg("path"));
    m.def("key_path", [](std::optional<std::string> explicit_path) {
        return path_from([&](char *b, size_t cap, size_t *need) {
            return sl_key_path(explicit_path ? explicit_path->c_str() : nullptr, b, cap, need);
        });
    }, py::arg("explicit_path") = py::none());
    m.def("config_dir", [] { return path_from(sl_config_dir); });
    m.def("tls_ensure_self_signed", [](const std::string &cert, const std::string &key) {
        int created = 0;
        check(sl_tls_ensure_self_signed(cert.c_str(), key.c_str(), &created), cert);
        return created != 0;
    }, py::arg("cert_path"), py::arg("key_path"));
    m.def("tls_fingerprint", [](const std::string &cert) {
        char fp[65];
        check(sl_tls_fingerprint(cert.c_str(), fp, sizeof fp), cert);
        return std::string(fp);
    }, py::arg("cert_path"));
    m.def("tls_pin_parse", [](const std::string &pin) {
        uint8_t out[32];
        check(sl_tls_pin_parse(pin.c_str(), out), "tls_pin is not a SHA-256 fingerprint (64 hex digits)");
        return to_bytes(out, sizeof out);
    }, py::arg("pin"));
    m.def("format_message", [](const py::buffer &data) {
        Bytes b(data);
        char buf[256];
        size_t n = sl_format_message(b.data(), b.size(), buf, sizeof buf);
        return std::string(buf, n);
    }, py::arg("data"));

    py::class_<Connection>(m, "Connection")
        .def(py::init<int, const py::buffer &, std::optional<size_t>, std::optional<size_t>, std::optional<py::buffer>>(),
             py::arg("role"), py::arg("psk"), py::arg("max_message") = py::none(), py::arg("max_send") = py::none(),
             py::arg("ephemeral") = py::none())
        .def("start", &Connection::start)
        .def("set_key_confirmation", &Connection::set_key_confirmation, py::arg("on"))
        .def("set_psks", &Connection::set_psks, py::arg("psks"))
        .def_property_readonly("psk_index", &Connection::psk_index)
        .def("rekey", &Connection::rekey)
        .def("set_mode", &Connection::set_mode, py::arg("mode"))
        .def("set_server_key", &Connection::set_server_key, py::arg("pub"))
        .def("set_static_key", &Connection::set_static_key, py::arg("priv"))
        .def("set_accepted_modes", &Connection::set_accepted_modes, py::arg("mask"))
        .def("set_login", &Connection::set_login, py::arg("user"), py::arg("password"))
        .def_property_readonly("server_key", &Connection::server_key)
        .def_property_readonly("server_modes", &Connection::server_modes)
        .def("set_rekey_bytes", &Connection::set_rekey_bytes, py::arg("n"))
        .def_property_readonly("rekeys", &Connection::rekeys)
        .def("feed_one", &Connection::feed_one, py::arg("data"), py::arg("offset"))
        .def("feed_eof", &Connection::feed_eof)
        .def("send", &Connection::send, py::arg("msg_type"), py::arg("data"))
        .def("data_to_send", &Connection::data_to_send)
        .def("set_trace", &Connection::set_trace, py::arg("fn"), py::arg("peer"))
        .def("handshake_hash", &Connection::handshake_hash)
        .def_property_readonly("pending_size", &Connection::pending_size)
        .def_property_readonly("established", &Connection::established)
        .def_property_readonly("closed", &Connection::closed);

    py::class_<Server>(m, "Server")
        .def(py::init<const py::buffer &, py::kwargs>(), py::arg("psk"))
        .def_property_readonly("port", &Server::port)
        .def("reload_users", &Server::reload_users)
        .def_property_readonly("sessions", &Server::sessions)
        .def("start", &Server::start)
        .def("stop", &Server::stop)
        .def("wait", &Server::wait);

    py::class_<Client>(m, "Client")
        .def(py::init<const py::buffer &, std::string, uint16_t, unsigned, size_t, py::object, bool,
                      std::optional<std::string>, std::optional<std::string>, std::optional<std::string>, uint64_t, int,
                      std::optional<py::buffer>, std::optional<py::buffer>, std::optional<std::string>,
                      std::optional<py::buffer>>(),
             py::arg("psk"), py::arg("host"), py::arg("port"), py::arg("timeout_ms"), py::arg("max_message"),
             py::arg("trace"), py::arg("tls"), py::arg("tls_ca"), py::arg("tls_pin"), py::arg("tls_trust_dir"),
             py::arg("rekey_bytes") = uint64_t{0}, py::arg("mode") = 0, py::arg("server_key") = py::none(),
             py::arg("identity") = py::none(), py::arg("user") = py::none(), py::arg("password") = py::none())
        .def_property_readonly("peer", &Client::peer)
        .def_property_readonly("server_key", &Client::server_key)
        .def("send", &Client::send, py::arg("msg_type"), py::arg("data"))
        .def("recv", &Client::recv, py::arg("timeout_ms"))
        .def("transfer", &Client::transfer, py::arg("upload"), py::arg("a"), py::arg("b"), py::arg("overwrite"),
             py::arg("progress"))
        .def("queue", &Client::queue, py::arg("msg_type"), py::arg("data"))
        .def("flush", &Client::flush, py::arg("timeout_ms"))
        .def("poll_message", &Client::poll_message)
        .def_property_readonly("pending", &Client::pending)
        .def_property_readonly("fd", &Client::fd)
        .def("close", &Client::close, py::arg("reason") = py::none())
        .def("rekey", &Client::rekey);
}
