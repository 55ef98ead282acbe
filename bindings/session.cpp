// session.cpp - bindings of the session layer (seclink.h, "the session layer") for seclink.aio,
// the asyncio server, which drives it from the event loop's thread: every call runs with the GIL
// held (each does little work: one read's worth of bytes), and log lines reach Python directly.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server_settings.hpp"
#include "seclink/seclink.h"

namespace py = pybind11;

namespace {

class Policy {
public:
    // Keyword arguments: ServerSettings' (server_settings.hpp), then tls, app_replies, stream, log.
    Policy(const py::buffer &psk, py::kwargs kwargs) {
        seclink_py::Kwargs kw(std::move(kwargs));
        seclink_py::ServerSettings settings(psk, kw);
        sl_server_config &cfg = settings.cfg;
        cfg.tls = kw.get<bool>("tls", false);
        cfg.stream = kw.get<bool>("stream", false);
        const bool app_replies = kw.get<bool>("app_replies", false);
        log_ = kw.take("log");
        kw.done();
        if (!log_.is_none()) {
            cfg.log = &Policy::on_log;
            cfg.log_ud = this;
        }
        // The session hands DATA to the driver (which awaits the Python handler) instead of
        // answering itself; it never calls this function.
        if (app_replies) cfg.handler = &Policy::unused_handler;
        int rc = sl_policy_new(&p_, &cfg);  // copies the key
        if (rc == SL_EIO) throw py::value_error("files_dir is not a directory that can be opened");
        if (rc != SL_OK && settings.has_cluster()) throw py::value_error(settings.cluster_problem());
        if (rc != SL_OK && sl_err_category(rc) == SL_CAT_KEY) {  // the authorized-keys file
            py::object exc = py::module_::import("seclink.errors").attr("from_code")(rc, "authorized keys", "");
            PyErr_SetObject(reinterpret_cast<PyObject *>(Py_TYPE(exc.ptr())), exc.ptr());
            throw py::error_already_set();
        }
        if (rc != SL_OK) throw py::value_error(std::string("invalid server configuration: ") + sl_strerror(rc));
    }
    ~Policy() {
        py::gil_scoped_release nogil;  // the cluster link's thread may be waiting to queue a call
        sl_policy_free(p_);
        if (notify_fd_ >= 0) close(notify_fd_);
    }

    // Calls from a thread other than the event loop's (the chat cluster link's) cannot take the
    // GIL: they are queued and a byte is written to `fd` (a pipe the loop reads), and
    // take_pending() hands them over: ([(level, line)], [session id to wake]).
    void set_notify_fd(int fd) {
        std::lock_guard<std::mutex> lock(mu_);
        notify_fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (notify_fd_ >= 0) fcntl(notify_fd_, F_SETFL, fcntl(notify_fd_, F_GETFL) | O_NONBLOCK);
    }
    py::tuple take_pending() {
        std::vector<std::pair<int, std::string>> logs;
        std::vector<uintptr_t> woken;
        {
            std::lock_guard<std::mutex> lock(mu_);
            logs.swap(logs_);
            woken.swap(woken_);
        }
        py::list l, w;
        for (auto &[level, line] : logs) l.append(py::make_tuple(level, line));
        for (uintptr_t id : woken) w.append(id);
        return py::make_tuple(l, w);
    }
    void foreign_wake(uintptr_t id) {
        std::lock_guard<std::mutex> lock(mu_);
        woken_.push_back(id);
        poke();
    }
    Policy(const Policy &) = delete;
    Policy &operator=(const Policy &) = delete;

    sl_policy *get() const { return p_; }
    size_t sessions() const { return sl_policy_sessions(p_); }
    size_t connections() const { return sl_policy_connections(p_); }
    size_t handshakes() const { return sl_policy_handshakes(p_); }
    size_t memory() const { return sl_policy_memory(p_); }
    int reload_users() { return sl_policy_reload_users(p_); }
    void out_of_fds() { sl_policy_out_of_fds(p_); }  // logs the core's [WARN] line

private:
    static void on_log(void *ud, int level, const char *line) {
        auto *self = static_cast<Policy *>(ud);
        if (!PyGILState_Check()) {  // the cluster link's thread
            std::lock_guard<std::mutex> lock(self->mu_);
            self->logs_.emplace_back(level, line);
            self->poke();
            return;
        }
        try {
            self->log_(level, std::string(line));
        } catch (py::error_already_set &e) {
            e.discard_as_unraisable("seclink server log callback");
        }
    }
    void poke() {  // under mu_
        const char b = 1;
        if (notify_fd_ >= 0 && write(notify_fd_, &b, 1) < 0) {
            // full: a byte is waiting already
        }
    }
    static int unused_handler(void *, const char *, const uint8_t *, size_t, sl_buf *) { return 1; }

    sl_policy *p_ = nullptr;
    py::object log_;
    std::mutex mu_;
    int notify_fd_ = -1;
    std::vector<std::pair<int, std::string>> logs_;
    std::vector<uintptr_t> woken_;
};

class Session {
public:
    Session(py::object policy, const std::string &peer, int64_t now) : policy_(std::move(policy)) {
        pol_ = &policy_.cast<Policy &>();
        int rc = sl_session_new(&s_, pol_->get(), peer.c_str(), now);
        if (rc == SL_ENOMEM) throw std::bad_alloc();
        if (rc != SL_OK) throw py::value_error(std::string("cannot set up the session: ") + sl_strerror(rc));
    }
    ~Session() { sl_session_free(s_); }
    Session(const Session &) = delete;
    Session &operator=(const Session &) = delete;

    // Feeds data[offset:]; returns (consumed, message or None).
    py::tuple feed(const py::bytes &data, size_t offset, int64_t now) {
        char *p = nullptr;
        Py_ssize_t n = 0;
        PyBytes_AsStringAndSize(data.ptr(), &p, &n);
        if (offset > static_cast<size_t>(n)) throw py::value_error("offset beyond the data");
        size_t used = 0, mlen = 0;
        const uint8_t *msg = nullptr;
        int rc = sl_session_feed(s_, reinterpret_cast<const uint8_t *>(p) + offset, static_cast<size_t>(n) - offset,
                                 now, &used, &msg, &mlen);
        if (rc == SL_ESTATE) throw py::value_error("feed: the session is not reading now (a reply is due?)");
        py::object m = msg != nullptr ? py::object(py::bytes(reinterpret_cast<const char *>(msg), mlen)) : py::none();
        return py::make_tuple(used, m);
    }
    void feed_eof(int64_t now) { sl_session_feed_eof(s_, now); }
    void reply(const py::bytes &data, int64_t now) {
        char *p = nullptr;
        Py_ssize_t n = 0;
        PyBytes_AsStringAndSize(data.ptr(), &p, &n);
        if (sl_session_reply(s_, reinterpret_cast<const uint8_t *>(p), static_cast<size_t>(n), now) == SL_ESTATE)
            throw py::value_error("reply: no message is waiting for one");
    }
    void reply_failed(const std::string &why, int64_t now) { sl_session_reply_failed(s_, why.c_str(), now); }
    // Stream mode (pipe): the driver's own DATA and EOF.
    void send(const py::bytes &data, int64_t now) {
        char *p = nullptr;
        Py_ssize_t n = 0;
        PyBytes_AsStringAndSize(data.ptr(), &p, &n);
        if (sl_session_send(s_, reinterpret_cast<const uint8_t *>(p), static_cast<size_t>(n), now) == SL_ESTATE)
            throw py::value_error("send: the session cannot send now (not stream mode, not open, or after EOF)");
    }
    void send_eof(int64_t now) {
        if (sl_session_send_eof(s_, now) == SL_ESTATE) throw py::value_error("send_eof: not open, or EOF already sent");
    }
    bool can_send() const { return sl_session_can_send(s_) != 0; }
    void fail(const std::string &why, int64_t now) { sl_session_fail(s_, why.c_str(), now); }
    bool peer_eof() const { return sl_session_peer_eof(s_) != 0; }
    // Everything pending, taken at once (the event loop's transport buffers it).
    py::bytes take_output(int64_t now) {
        const uint8_t *p = nullptr;
        size_t n = 0;
        sl_session_pending(s_, &p, &n);
        py::bytes out(reinterpret_cast<const char *>(p), n);
        sl_session_consume(s_, n, now);
        return out;
    }
    // The asyncio driver's fast path for a plain session with built-in replies: feeds data, pumps
    // and takes the output in one call. Returns (consumed, output, calm); calm is False when the
    // driver must look again (data left over, or the session is not open, busy or not reading),
    // and then the output stays pending for it.
    py::tuple serve(const py::bytes &data, int64_t now) {
        char *p = nullptr;
        Py_ssize_t n = 0;
        PyBytes_AsStringAndSize(data.ptr(), &p, &n);
        size_t off = 0;
        const auto size = static_cast<size_t>(n);
        auto calm = [this] {
            return sl_session_status(s_) == SL_SESSION_OPEN && sl_session_busy(s_) == 0 &&
                   sl_session_wants_read(s_) != 0;
        };
        while (off < size && calm()) {
            size_t used = 0, mlen = 0;
            const uint8_t *msg = nullptr;
            if (sl_session_feed(s_, reinterpret_cast<const uint8_t *>(p) + off, size - off, now, &used, &msg,
                                &mlen) == SL_ESTATE)
                throw py::value_error("serve: the session is not reading now");
            if (msg != nullptr) throw py::value_error("serve: a message for a handler (use feed)");
            if (used == 0) break;
            off += used;
        }
        if (sl_session_status(s_) != SL_SESSION_OPEN) return py::make_tuple(off, py::bytes(), false);
        sl_session_pump(s_, now);
        return py::make_tuple(off, take_output(now), off == size && calm());
    }
    int status() const { return sl_session_status(s_); }
    bool wants_read() const { return sl_session_wants_read(s_) != 0; }
    int64_t deadline() const { return sl_session_deadline(s_); }
    void tick(int64_t now) { sl_session_tick(s_, now); }
    void io_error(int err, bool writing, int64_t now) { sl_session_io_error(s_, err, writing, now); }
    bool tls_check(const py::bytes &data, int64_t now) {
        std::string d = data;
        return sl_session_tls_check(s_, reinterpret_cast<const uint8_t *>(d.data()), d.size(), now) != 0;
    }
    void tls_failed(const std::string &detail, int64_t now) { sl_session_tls_failed(s_, detail.c_str(), now); }
    void shutdown(int64_t now) { sl_session_shutdown(s_, now); }
    void close() { sl_session_close(s_); }
    std::string peer() const { return sl_session_peer(s_); }
    // Chat: `fn()` is called (on the event loop's thread, inside another session's call, GIL
    // held) when other sessions queued lines for this one; it must only schedule a pump().
    void set_wake(py::object fn) {
        wake_ = std::move(fn);
        sl_session_set_wake(s_, wake_.is_none() ? nullptr : &Session::on_wake, this);
    }
    void pump(int64_t now) { sl_session_pump(s_, now); }
    bool busy() const { return sl_session_busy(s_) != 0; }
    uintptr_t id() const { return reinterpret_cast<uintptr_t>(this); }

private:
    static void on_wake(void *ud) {
        auto *self = static_cast<Session *>(ud);
        if (!PyGILState_Check()) {  // a line from another server, on the cluster link's thread
            self->pol_->foreign_wake(self->id());
            return;
        }
        try {
            self->wake_();
        } catch (py::error_already_set &e) {
            e.discard_as_unraisable("seclink session wake callback");
        }
    }
    py::object policy_;  // keeps the policy alive as long as its sessions
    Policy *pol_ = nullptr;
    sl_session *s_ = nullptr;
    py::object wake_;
};

}  // namespace

void bind_session(py::module_ &m) {
    m.attr("SESSION_OPEN") = static_cast<int>(SL_SESSION_OPEN);
    m.attr("SESSION_CLOSING") = static_cast<int>(SL_SESSION_CLOSING);
    m.attr("SESSION_CLOSED") = static_cast<int>(SL_SESSION_CLOSED);
    m.attr("DEFAULT_PORT") = SL_DEFAULT_PORT;
    m.attr("DEFAULT_MAX_CLIENTS") = SL_DEFAULT_MAX_CLIENTS;
    m.attr("DEFAULT_MAX_HANDSHAKES") = SL_DEFAULT_MAX_HANDSHAKES;
    m.attr("DEFAULT_MAX_HANDSHAKES_PER_ADDR") = SL_DEFAULT_MAX_HANDSHAKES_PER_ADDR;
    m.attr("DEFAULT_HANDSHAKE_RATE") = SL_DEFAULT_HANDSHAKE_RATE;
    m.attr("DEFAULT_HANDSHAKE_TIMEOUT_MS") = SL_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    m.attr("DEFAULT_IDLE_TIMEOUT_MS") = SL_DEFAULT_IDLE_TIMEOUT_MS;
    m.attr("DEFAULT_FRAME_TIMEOUT_MS") = SL_DEFAULT_FRAME_TIMEOUT_MS;
    m.attr("DEFAULT_MAX_MEMORY") = static_cast<size_t>(SL_DEFAULT_MAX_MEMORY);
    m.attr("DEFAULT_MAX_FILE_SIZE") = static_cast<uint64_t>(SL_DEFAULT_MAX_FILE_SIZE);
    m.attr("DEFAULT_MAX_FILES_TOTAL") = static_cast<uint64_t>(SL_DEFAULT_MAX_FILES_TOTAL);
    m.attr("FILE_CHUNK") = static_cast<size_t>(SL_FILE_CHUNK);
    m.attr("DEFAULT_KEEPALIVE_MS") = SL_DEFAULT_KEEPALIVE_MS;
    m.attr("DEFAULT_CHAT_ROOMS") = SL_DEFAULT_CHAT_ROOMS;
    m.attr("DEFAULT_CHAT_MEMBERS") = SL_DEFAULT_CHAT_MEMBERS;
    m.attr("DEFAULT_CHAT_RATE") = SL_DEFAULT_CHAT_RATE;
    m.attr("DEFAULT_CHAT_QUEUE") = SL_DEFAULT_CHAT_QUEUE;

    py::class_<Policy>(m, "Policy")
        .def(py::init<const py::buffer &, py::kwargs>(), py::arg("psk"))
        .def("set_notify_fd", &Policy::set_notify_fd, py::arg("fd"))
        .def("take_pending", &Policy::take_pending)
        .def_property_readonly("sessions", &Policy::sessions)
        .def_property_readonly("connections", &Policy::connections)
        .def_property_readonly("handshakes", &Policy::handshakes)
        .def_property_readonly("memory", &Policy::memory)
        .def("reload_users", &Policy::reload_users)
        .def("out_of_fds", &Policy::out_of_fds);

    py::class_<Session>(m, "Session")
        .def(py::init<py::object, const std::string &, int64_t>(), py::arg("policy"), py::arg("peer"), py::arg("now"))
        .def("feed", &Session::feed, py::arg("data"), py::arg("offset"), py::arg("now"))
        .def("feed_eof", &Session::feed_eof, py::arg("now"))
        .def("reply", &Session::reply, py::arg("data"), py::arg("now"))
        .def("reply_failed", &Session::reply_failed, py::arg("why"), py::arg("now"))
        .def("take_output", &Session::take_output, py::arg("now"))
        .def("serve", &Session::serve, py::arg("data"), py::arg("now"))
        .def("send", &Session::send, py::arg("data"), py::arg("now"))
        .def("send_eof", &Session::send_eof, py::arg("now"))
        .def("can_send", &Session::can_send)
        .def("fail", &Session::fail, py::arg("why"), py::arg("now"))
        .def("peer_eof", &Session::peer_eof)
        .def("status", &Session::status)
        .def("wants_read", &Session::wants_read)
        .def("deadline", &Session::deadline)
        .def("tick", &Session::tick, py::arg("now"))
        .def("io_error", &Session::io_error, py::arg("err"), py::arg("writing"), py::arg("now"))
        .def("tls_check", &Session::tls_check, py::arg("data"), py::arg("now"))
        .def("tls_failed", &Session::tls_failed, py::arg("detail"), py::arg("now"))
        .def("shutdown", &Session::shutdown, py::arg("now"))
        .def("close", &Session::close)
        .def("set_wake", &Session::set_wake, py::arg("fn"))
        .def("pump", &Session::pump, py::arg("now"))
        .def("busy", &Session::busy)
        .def_property_readonly("id", &Session::id)
        .def_property_readonly("peer", &Session::peer);
}
