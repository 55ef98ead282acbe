// server_settings.hpp - what a server is configured with (keys, identity, users, limits,
// deadlines, files, chat), as the Python package passes it by keyword to the native Server and
// to the asyncio Policy alike: read and checked here once, into one sl_server_config.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <openssl/crypto.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "keylist.hpp"
#include "seclink/seclink.h"

namespace seclink_py {

namespace py = pybind11;

// Keyword arguments, each taken once by name; one left over at the end is a mistake (a typo
// would otherwise be ignored) and is named in a TypeError.
class Kwargs {
public:
    explicit Kwargs(py::kwargs kw) : kw_(std::move(kw)) {}

    py::object take(const char *name) {
        if (!kw_.contains(name)) return py::none();
        py::object v = kw_[name];
        if (PyDict_DelItemString(kw_.ptr(), name) != 0) throw py::error_already_set();
        return v;
    }
    // The value given, or `dflt` when it is missing or None.
    template <class T> T get(const char *name, T dflt) {
        py::object v = take(name);
        return v.is_none() ? dflt : v.cast<T>();
    }
    // A path (str or os.PathLike) or nothing.
    std::optional<std::string> path(const char *name) {
        py::object v = take(name);
        if (v.is_none()) return std::nullopt;
        return py::module_::import("os").attr("fspath")(v).cast<std::string>();
    }
    void done() const {
        for (auto item : kw_)
            throw py::type_error("unexpected keyword argument '" + py::str(item.first).cast<std::string>() + "'");
    }

private:
    py::kwargs kw_;
};

// The settings every server shares, with the strings and keys `cfg` points into. Fields not given
// keep sl_server_config_init's defaults. Not copyable: `cfg` points into the object itself.
class ServerSettings {
public:
    ServerSettings(const py::buffer &psk, Kwargs &kw)
        : keys_(psk, kw.get<std::optional<std::vector<std::string>>>("psk_names", std::nullopt)) {
        sl_server_config_init(&cfg);
        keys_.apply(cfg);
        cfg.rekey_bytes = kw.get<uint64_t>("rekey_bytes", cfg.rekey_bytes);
        py::object server_key = kw.take("server_key");
        if (!server_key.is_none()) {
            py::buffer_info b = server_key.cast<py::buffer>().request();
            if (static_cast<size_t>(b.size * b.itemsize) != server_key_.size() || (b.ndim == 1 && b.strides[0] != b.itemsize))
                throw py::value_error("a server key is 32 contiguous bytes");
            memcpy(server_key_.data(), b.ptr, server_key_.size());
            cfg.server_key = server_key_.data();
        }
        cfg.modes = kw.get<unsigned>("modes", cfg.modes);
        authorized_keys_ = kw.path("authorized_keys");
        if (authorized_keys_) cfg.authorized_keys = authorized_keys_->c_str();
        password_users_ = kw.path("password_users");
        if (password_users_) cfg.password_users = password_users_->c_str();

        cfg.max_clients = kw.get<unsigned>("max_clients", cfg.max_clients);
        cfg.max_handshakes = kw.get<unsigned>("max_handshakes", cfg.max_handshakes);
        cfg.max_handshakes_per_addr = kw.get<unsigned>("max_handshakes_per_addr", cfg.max_handshakes_per_addr);
        cfg.handshake_rate = kw.get<unsigned>("handshake_rate", cfg.handshake_rate);
        cfg.handshake_timeout_ms = kw.get<unsigned>("handshake_timeout_ms", cfg.handshake_timeout_ms);
        cfg.idle_timeout_ms = kw.get<unsigned>("idle_timeout_ms", cfg.idle_timeout_ms);
        cfg.frame_timeout_ms = kw.get<unsigned>("frame_timeout_ms", cfg.frame_timeout_ms);
        cfg.max_message = kw.get<size_t>("max_message", cfg.max_message);
        cfg.max_memory = kw.get<size_t>("max_memory", cfg.max_memory);
        cfg.echo = kw.get<bool>("echo", cfg.echo != 0);
        cfg.redact = kw.get<bool>("redact", cfg.redact != 0);
        cfg.log_level = kw.get<int>("log_level", cfg.log_level);

        files_dir_ = kw.path("files_dir");
        if (files_dir_) cfg.files_dir = files_dir_->c_str();
        cfg.files_overwrite = kw.get<bool>("files_overwrite", cfg.files_overwrite != 0);
        cfg.max_file_size = kw.get<uint64_t>("max_file_size", cfg.max_file_size);
        cfg.max_files_total = kw.get<uint64_t>("max_files_total", cfg.max_files_total);

        cfg.chat = kw.get<bool>("chat", cfg.chat != 0);
        cfg.chat_rooms = kw.get<unsigned>("chat_rooms", cfg.chat_rooms);
        cfg.chat_members = kw.get<unsigned>("chat_members", cfg.chat_members);
        cfg.chat_rate = kw.get<unsigned>("chat_rate", cfg.chat_rate);
        cfg.chat_queue = kw.get<unsigned>("chat_queue", cfg.chat_queue);
        chat_cluster_ = kw.get<std::string>("chat_cluster", "");
        cfg.chat_cluster = chat_cluster_.empty() ? nullptr : chat_cluster_.c_str();
    }
    ~ServerSettings() { OPENSSL_cleanse(server_key_.data(), server_key_.size()); }
    ServerSettings(const ServerSettings &) = delete;
    ServerSettings &operator=(const ServerSettings &) = delete;

    // What to tell the user when a server with chat_cluster set was refused (the URL or the build).
    std::string cluster_problem() const {
        return "cannot link chat rooms through " + chat_cluster_ + ": " +
               (sl_chat_cluster_available() ? "not a NATS URL (nats://HOST:PORT)"
                                            : "this build has no NATS client (install libnats-dev, rebuild)");
    }
    bool has_cluster() const { return !chat_cluster_.empty(); }

    sl_server_config cfg;

private:
    KeyList keys_;
    std::array<uint8_t, 32> server_key_{};
    std::optional<std::string> authorized_keys_, password_users_, files_dir_;
    std::string chat_cluster_;
};

}  // namespace seclink_py
