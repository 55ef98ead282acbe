/* capp: a C program that uses an installed libseclink, as a user would. It generates a key file,
 * loads it, and runs a full in-memory handshake and a message each way through the C ABI.
 * Usage: capp KEYFILE (which must not exist). Prints one line and exits 0 on success. */
#include <stdio.h>
#include <string.h>

#include <seclink/seclink.h>

/* Moves what `from` has queued into `to`; the last message it delivers goes to msg. */
static int deliver(sl_conn *from, sl_conn *to, char *msg, size_t cap) {
    const uint8_t *p = NULL;
    size_t n = 0, off = 0;
    uint8_t buf[4096];
    if (sl_conn_pending(from, &p, &n) != SL_OK || n > sizeof buf) return SL_EINTERNAL;
    memcpy(buf, p, n);
    if (sl_conn_consume(from, n) != SL_OK) return SL_EINTERNAL;
    while (off < n) {
        size_t used = 0;
        sl_event ev;
        int rc = sl_conn_feed(to, buf + off, n - off, &used, &ev);
        if (rc != SL_OK) return rc;
        off += used;
        if (ev.type == SL_EVENT_MESSAGE && msg != NULL && ev.len < cap) {
            memcpy(msg, ev.data, ev.len);
            msg[ev.len] = '\0';
        }
    }
    return SL_OK;
}

static int fail(const char *what, int rc) {
    fprintf(stderr, "capp: %s: %s [%s]\n", what, sl_strerror(rc), sl_errname(rc));
    return 1;
}

int main(int argc, char **argv) {
    uint8_t made[SL_KEY_BYTES], psk[SL_KEY_BYTES];
    uint8_t h1[SL_HASH_BYTES], h2[SL_HASH_BYTES];
    sl_conn *client = NULL, *server = NULL;
    char got[64] = "";
    int rc;

    if (argc != 2) return fprintf(stderr, "usage: capp KEYFILE\n"), 2;
    if ((rc = sl_key_generate(argv[1], made)) != SL_OK) return fail("sl_key_generate", rc);
    if ((rc = sl_key_load(argv[1], psk)) != SL_OK) return fail("sl_key_load", rc);
    if (memcmp(made, psk, sizeof psk) != 0) return fail("the loaded key differs", SL_EINTERNAL);
    if ((rc = sl_conn_new(&client, SL_CLIENT, psk)) != SL_OK || (rc = sl_conn_new(&server, SL_SERVER, psk)) != SL_OK)
        return fail("sl_conn_new", rc);
    if ((rc = sl_conn_start(client)) != SL_OK || (rc = sl_conn_start(server)) != SL_OK) return fail("sl_conn_start", rc);
    if ((rc = deliver(client, server, NULL, 0)) != SL_OK || (rc = deliver(server, client, NULL, 0)) != SL_OK)
        return fail("handshake", rc);
    if (!sl_conn_is_established(client) || sl_conn_handshake_hash(client, h1) != SL_OK ||
        sl_conn_handshake_hash(server, h2) != SL_OK || memcmp(h1, h2, sizeof h1) != 0)
        return fail("handshake", SL_ESTATE);
    if ((rc = sl_conn_send(client, SL_MSG_DATA, (const uint8_t *)"ping from C", 11)) != SL_OK ||
        (rc = deliver(client, server, got, sizeof got)) != SL_OK || strcmp(got, "ping from C") != 0)
        return fail("client to server", rc != SL_OK ? rc : SL_EAUTH);
    if ((rc = sl_conn_send(server, SL_MSG_DATA, (const uint8_t *)"pong to C", 9)) != SL_OK ||
        (rc = deliver(server, client, got, sizeof got)) != SL_OK || strcmp(got, "pong to C") != 0)
        return fail("server to client", rc != SL_OK ? rc : SL_EAUTH);
    sl_conn_free(client);
    sl_conn_free(server);
    printf("capp: libseclink %s: key file, handshake and a message each way\n", sl_version());
    return 0;
}
