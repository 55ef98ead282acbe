// loadgen: what the protocol clients share (see protocol.hpp), and the choice of one.
#include "protocol.hpp"

#include "common.hpp"

namespace loadgen {

std::unique_ptr<Protocol> make_seclink_protocol(const Config &cfg, Requests &req, Events &ev);
std::unique_ptr<Protocol> make_raw_protocol(const Config &cfg, Requests &req, Events &ev);
std::unique_ptr<Protocol> make_cbc_protocol(const Config &cfg, Requests &req, Events &ev);

std::unique_ptr<Protocol> make_protocol(const Config &cfg, Requests &req, Events &ev) {
    if (is_seclink(cfg.opt.proto)) return make_seclink_protocol(cfg, req, ev);
    if (is_raw(cfg.opt.proto)) return make_raw_protocol(cfg, req, ev);
    return make_cbc_protocol(cfg, req, ev);
}

const char *Protocol::eof_hint(const Conn &c) const {
    return c.seq == 1 ? "; is the server speaking this --proto?" : "";
}

void Protocol::deliver_reply(Conn &c, const uint8_t *data, size_t len) {
    if (c.st != St::Waiting) fatal("connection #%u: unexpected message from the server (%s)", c.id, st_name(c.st));
    req_.check_reply(c, data, len);
    ev_.reply_ok(c);
}

}  // namespace loadgen
