// session.cpp - bindings of the session layer (seclink.h, "the session layer") for seclink.aio,
// the asyncio server, which drives it from the event loop's thread: every call runs with the GIL
// held (each does little work: one read's worth of bytes), and log lines reach Python directly.
#include <pybind11/pybind11.h>

#include <cstring>
#include <string>

#include "keylist.hpp"
#include "seclink/seclink.h"

namespace py = pybind11;

namespace {

class Policy {
public:
    Policy(const py::buffer &psk, unsigned max_clients, unsigned max_handshakes, unsigned max_handshakes_per_addr,
           unsigned handshake_rate, unsigned handshake_timeout_ms, unsigned idle_timeout_ms, unsigned frame_timeout_ms,
           size_t max_message, size_t max_memory, bool echo, bool redact, bool tls, bool app_replies, int log_level,
           py::object log, const std::optional<std::vector<std::string>> &psk_names, uint64_t rekey_bytes,
           std::optional<py::buffer> server_key, unsigned modes, std::optional<std::string> authorized_keys,
           std::optional<std::string> password_users)
        : log_(std::move(log)) {
        seclink_py::KeyList keys(psk, psk_names);
        sl_server_config cfg;
        sl_server_config_init(&cfg);
        keys.apply(cfg);
        cfg.rekey_bytes = rekey_bytes;
        py::buffer_info static_key;
        if (server_key) {
            static_key = server_key->request();
            if (static_key.size * static_key.itemsize != 32) throw py::value_error("a server key is 32 bytes");
            cfg.server_key = static_cast<const uint8_t *>(static_key.ptr);
        }
        cfg.modes = modes;
        if (authorized_keys) cfg.authorized_keys = authorized_keys->c_str();
        if (password_users) cfg.password_users = password_users->c_str();
        cfg.max_clients = max_clients;
        cfg.max_handshakes = max_handshakes;
        cfg.max_handshakes_per_addr = max_handshakes_per_addr;
        cfg.handshake_rate = handshake_rate;
        cfg.handshake_timeout_ms = handshake_timeout_ms;
        cfg.idle_timeout_ms = idle_timeout_ms;
        cfg.frame_timeout_ms = frame_timeout_ms;
        cfg.max_message = max_message;
        cfg.max_memory = max_memory;
        cfg.echo = echo;
        cfg.redact = redact;
        cfg.tls = tls;
        cfg.log_level = log_level;
        if (!log_.is_none()) {
            cfg.log = &Policy::on_log;
            cfg.log_ud = this;
        }
        // The session hands DATA to the driver (which awaits the Python handler) instead of
        // answering itself; it never calls this function.
        if (app_replies) cfg.handler = &Policy::unused_handler;
        int rc = sl_policy_new(&p_, &cfg);  // copies the key
        if (rc != SL_OK && sl_err_category(rc) == SL_CAT_KEY) {  // the authorized-keys file
            py::object exc = py::module_::import("seclink.errors").attr("from_code")(rc, "authorized keys", "");
            PyErr_SetObject(reinterpret_cast<PyObject *>(Py_TYPE(exc.ptr())), exc.ptr());
            throw py::error_already_set();
        }
        if (rc != SL_OK) throw py::value_error(std::string("invalid server configuration: ") + sl_strerror(rc));
    }
    ~Policy() { sl_policy_free(p_); }
    Policy(const Policy &) = delete;
    Policy &operator=(const Policy &) = delete;

    sl_policy *get() const { return p_; }
    size_t sessions() const { return sl_policy_sessions(p_); }
    size_t connections() const { return sl_policy_connections(p_); }
    size_t handshakes() const { return sl_policy_handshakes(p_); }
    size_t memory() const { return sl_policy_memory(p_); }
    int reload_users() { return sl_policy_reload_users(p_); }

private:
    static void on_log(void *ud, int level, const char *line) {
        try {
            static_cast<Policy *>(ud)->log_(level, std::string(line));
        } catch (py::error_already_set &e) {
            e.discard_as_unraisable("seclink server log callback");
        }
    }
    static int unused_handler(void *, const char *, const uint8_t *, size_t, sl_buf *) { return 1; }

    sl_policy *p_ = nullptr;
    py::object log_;
};

class Session {
public:
    Session(py::object policy, const std::string &peer, int64_t now) : policy_(std::move(policy)) {
        int rc = sl_session_new(&s_, policy_.cast<Policy &>().get(), peer.c_str(), now);
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
    // Everything pending, taken at once (the event loop's transport buffers it).
    py::bytes take_output(int64_t now) {
        const uint8_t *p = nullptr;
        size_t n = 0;
        sl_session_pending(s_, &p, &n);
        py::bytes out(reinterpret_cast<const char *>(p), n);
        sl_session_consume(s_, n, now);
        return out;
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

private:
    py::object policy_;  // keeps the policy alive as long as its sessions
    sl_session *s_ = nullptr;
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

    py::class_<Policy>(m, "Policy")
        .def(py::init<const py::buffer &, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, size_t,
                      size_t, bool, bool, bool, bool, int, py::object, const std::optional<std::vector<std::string>> &,
                      uint64_t, std::optional<py::buffer>, unsigned, std::optional<std::string>,
                      std::optional<std::string>>(),
             py::arg("psk"), py::kw_only(), py::arg("max_clients"), py::arg("max_handshakes"),
             py::arg("max_handshakes_per_addr"), py::arg("handshake_rate"), py::arg("handshake_timeout_ms"),
             py::arg("idle_timeout_ms"), py::arg("frame_timeout_ms"), py::arg("max_message"), py::arg("max_memory"),
             py::arg("echo"), py::arg("redact"), py::arg("tls"), py::arg("app_replies"), py::arg("log_level"),
             py::arg("log"), py::arg("psk_names") = py::none(), py::arg("rekey_bytes") = uint64_t{0},
             py::arg("server_key") = py::none(), py::arg("modes") = 0u, py::arg("authorized_keys") = py::none(),
             py::arg("password_users") = py::none())
        .def_property_readonly("sessions", &Policy::sessions)
        .def_property_readonly("connections", &Policy::connections)
        .def_property_readonly("handshakes", &Policy::handshakes)
        .def_property_readonly("memory", &Policy::memory)
        .def("reload_users", &Policy::reload_users);

    py::class_<Session>(m, "Session")
        .def(py::init<py::object, const std::string &, int64_t>(), py::arg("policy"), py::arg("peer"), py::arg("now"))
        .def("feed", &Session::feed, py::arg("data"), py::arg("offset"), py::arg("now"))
        .def("feed_eof", &Session::feed_eof, py::arg("now"))
        .def("reply", &Session::reply, py::arg("data"), py::arg("now"))
        .def("reply_failed", &Session::reply_failed, py::arg("why"), py::arg("now"))
        .def("take_output", &Session::take_output, py::arg("now"))
        .def("status", &Session::status)
        .def("wants_read", &Session::wants_read)
        .def("deadline", &Session::deadline)
        .def("tick", &Session::tick, py::arg("now"))
        .def("io_error", &Session::io_error, py::arg("err"), py::arg("writing"), py::arg("now"))
        .def("tls_check", &Session::tls_check, py::arg("data"), py::arg("now"))
        .def("tls_failed", &Session::tls_failed, py::arg("detail"), py::arg("now"))
        .def("shutdown", &Session::shutdown, py::arg("now"))
        .def("close", &Session::close)
        .def_property_readonly("peer", &Session::peer);
}
