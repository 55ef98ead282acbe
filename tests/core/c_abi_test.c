/* A plain C11 program using only seclink.h: a full in-memory handshake and message exchange.
 * Exits 0 on success; prints what failed otherwise. */
#include <stdio.h>
#include <string.h>

#include "seclink/seclink.h"

static int failures = 0;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                    \
        }                                                                  \
    } while (0)

/* Moves everything `from` has pending into `to`; records the last message event. */
static int deliver(sl_conn *from, sl_conn *to, char *msg, size_t cap, int *msg_type) {
    const uint8_t *p = NULL;
    size_t n = 0, off = 0;
    uint8_t buf[4096];
    if (sl_conn_pending(from, &p, &n) != SL_OK || n > sizeof buf) return SL_EINTERNAL;
    memcpy(buf, p, n);
    sl_conn_consume(from, n);
    while (off < n) {
        size_t used = 0;
        sl_event ev;
        int rc = sl_conn_feed(to, buf + off, n - off, &used, &ev);
        if (rc != SL_OK) return rc;
        off += used;
        if (ev.type == SL_EVENT_MESSAGE && msg != NULL && ev.len < cap) {
            memcpy(msg, ev.data, ev.len);
            msg[ev.len] = '\0';
            *msg_type = ev.msg_type;
        }
    }
    return SL_OK;
}

int main(void) {
    uint8_t psk[SL_KEY_BYTES];
    sl_conn *client = NULL, *server = NULL;
    char msg[256] = "";
    int type = 0;
    const char *hello = "hello from C11";

    memset(psk, 0x2a, sizeof psk);
    CHECK(sl_conn_new(&client, SL_CLIENT, psk) == SL_OK);
    CHECK(sl_conn_new(&server, SL_SERVER, psk) == SL_OK);
    CHECK(sl_conn_start(client) == SL_OK);
    CHECK(sl_conn_start(server) == SL_OK);
    CHECK(sl_conn_pending_size(client) == SL_PREFIX_BYTES + SL_HANDSHAKE1_BYTES);
    CHECK(deliver(client, server, NULL, 0, NULL) == SL_OK);
    CHECK(deliver(server, client, NULL, 0, NULL) == SL_OK);
    CHECK(sl_conn_is_established(client) && sl_conn_is_established(server));

    CHECK(sl_conn_send(client, SL_MSG_DATA, (const uint8_t *)hello, strlen(hello)) == SL_OK);
    CHECK(deliver(client, server, msg, sizeof msg, &type) == SL_OK);
    CHECK(type == SL_MSG_DATA && strcmp(msg, hello) == 0);

    CHECK(sl_conn_send(client, SL_MSG_PING, (const uint8_t *)"p", 1) == SL_OK);
    CHECK(deliver(client, server, msg, sizeof msg, &type) == SL_OK && type == SL_MSG_PING);
    CHECK(deliver(server, client, msg, sizeof msg, &type) == SL_OK && type == SL_MSG_PONG);

    CHECK(sl_conn_send(server, SL_MSG_CLOSE, (const uint8_t *)"bye", 3) == SL_OK);
    CHECK(deliver(server, client, msg, sizeof msg, &type) == SL_OK);
    CHECK(type == SL_MSG_CLOSE && strcmp(msg, "bye") == 0 && sl_conn_is_closed(client));
    CHECK(strcmp(sl_errname(SL_EAUTH), "AUTH") == 0);
    CHECK(sl_err_category(SL_EADDRNOTAVAIL) == SL_CAT_NETWORK && sl_err_category(SL_ETLS_PIN) == SL_CAT_TLS);
    CHECK(sl_err_category(SL_EKEY_DIR) == SL_CAT_KEY && sl_err_category(SL_EAUTH) == SL_CAT_SESSION);
    CHECK(sl_version() != NULL && sl_strerror(SL_EWEAK_KEY) != NULL);

    sl_conn_free(client);
    sl_conn_free(server);
    sl_conn_free(NULL);
    if (failures == 0) printf("C ABI test: handshake, DATA, PING/PONG and CLOSE exchanged from C11\n");
    return failures == 0 ? 0 : 1;
}
