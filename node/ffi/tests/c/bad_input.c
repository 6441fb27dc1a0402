/*
 * Bad input through the C API: NULL pointers, invalid UTF-8, a JID that is not a
 * JID, out-of-range values, small buffers, unknown handles, calls after close and
 * double close. Every one must return its status code; none may crash (the test
 * suite runs this under valgrind).
 *
 *   ./bad_input OVERLAY CONFIG_URL ROOT_PEM_FILE PASSWORD
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xor.h"

#define S(str) (const uint8_t *)(str), strlen(str)

static int failures;

static void expect(const char *what, XorStatus got, XorStatus want) {
    char err[256] = "";
    size_t len = 0;
    if (got != XOR_STATUS_OK) xor_last_error((uint8_t *)err, sizeof err, &len);
    if (got != want) {
        fprintf(stderr, "FAIL %s: got %d, want %d (%s)\n", what, (int)got, (int)want, err);
        failures++;
    } else {
        printf("ok   %-48s %3d %s\n", what, (int)got, err);
    }
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    const char *overlay = argv[1], *url = argv[2], *password = argv[4];
    size_t pem_len;
    char *pem = read_file(argv[3], &pem_len);
    const uint8_t bad_utf8[] = {'a', 0xff, 0xfe, 'b'};
    XorOptions o = 0, spare = 0;
    XorChat chat = 0;
    XorEvent ev;
    char buf[256];
    size_t len = 0;

    /* Options. */
    expect("options_new NULL name", xor_options_new(NULL, 5, &o), XOR_STATUS_ERR_NULL);
    expect("options_new NULL out", xor_options_new(S("x"), NULL), XOR_STATUS_ERR_NULL);
    expect("options_new invalid UTF-8", xor_options_new(bad_utf8, sizeof bad_utf8, &o), XOR_STATUS_ERR_UTF8);
    expect("options_new empty name", xor_options_new((const uint8_t *)"", 0, &o), XOR_STATUS_ERR_INVALID);
    expect("options_new", xor_options_new(S(overlay), &o), XOR_STATUS_OK);
    expect("listen: not an address", xor_options_listen(o, S("not an address")), XOR_STATUS_ERR_INVALID);
    expect("bootstrap: invalid UTF-8", xor_options_bootstrap(o, bad_utf8, sizeof bad_utf8), XOR_STATUS_ERR_UTF8);
    expect("stun server: invalid UTF-8", xor_options_stun_server(o, bad_utf8, sizeof bad_utf8), XOR_STATUS_ERR_UTF8);
    expect("turn server: NULL user name", xor_options_turn_server(o, S("turn:203.0.113.5:3478"), NULL, 1, S("p")), XOR_STATUS_ERR_NULL);
    expect("callback NULL", xor_options_callback(o, NULL, NULL, S("t")), XOR_STATUS_ERR_NULL);
    expect("event capacity 0", xor_options_event_capacity(o, 0), XOR_STATUS_ERR_INVALID);
    expect("event capacity over the limit", xor_options_event_capacity(o, (1u << 20) + 1), XOR_STATUS_ERR_INVALID);
    expect("event capacity at the limit", xor_options_event_capacity(o, 1u << 20), XOR_STATUS_OK);
    expect("event capacity back to 4096", xor_options_event_capacity(o, 4096), XOR_STATUS_OK);
    expect("enroll NULL password", xor_options_enroll(o, S("alice@example.org"), NULL, 3), XOR_STATUS_ERR_NULL);
    expect("start without credentials", xor_start(o, &chat), XOR_STATUS_ERR_CONFIG);
    expect("options_new spare", xor_options_new(S(overlay), &spare), XOR_STATUS_OK);
    expect("savedata: garbage", xor_options_savedata(spare, S("format = 7")), XOR_STATUS_OK);
    expect("start from garbage savedata", xor_start(spare, &chat), XOR_STATUS_ERR_CONFIG);
    expect("start with an unknown handle", xor_start(987654321, &chat), XOR_STATUS_ERR_HANDLE);
    expect("options_free", xor_options_free(spare), XOR_STATUS_OK);
    expect("options_free twice", xor_options_free(spare), XOR_STATUS_ERR_HANDLE);
    expect("options setter after free", xor_options_priority(spare, 1), XOR_STATUS_ERR_HANDLE);

    /* A live chat. */
    expect("config_url", xor_options_config_url(o, S(url)), XOR_STATUS_OK);
    expect("http roots", xor_options_http_roots_pem(o, (const uint8_t *)pem, pem_len), XOR_STATUS_OK);
    expect("enroll", xor_options_enroll(o, S("alice@example.org"), S(password)), XOR_STATUS_OK);
    expect("listen", xor_options_listen(o, S("127.0.0.1:0")), XOR_STATUS_OK);
    expect("start_overlay", xor_options_start_overlay(o, 1), XOR_STATUS_OK);
    expect("start NULL out", xor_start(o, NULL), XOR_STATUS_ERR_NULL);
    expect("start", xor_start(o, &chat), XOR_STATUS_OK);
    expect("close with the options handle", xor_close(o), XOR_STATUS_ERR_HANDLE);
    expect("send: not a JID", xor_send(chat, S("not a jid@@"), S("x"), NULL, 0, NULL), XOR_STATUS_ERR_JID);
    expect("send: empty JID", xor_send(chat, (const uint8_t *)"", 0, S("x"), NULL, 0, NULL), XOR_STATUS_ERR_JID);
    expect("send: NULL to", xor_send(chat, NULL, 3, S("x"), NULL, 0, NULL), XOR_STATUS_ERR_NULL);
    expect("send: NULL body", xor_send(chat, S("bob@example.org"), NULL, 1, NULL, 0, NULL), XOR_STATUS_ERR_NULL);
    expect("send: invalid UTF-8 body", xor_send(chat, S("bob@example.org"), bad_utf8, sizeof bad_utf8, NULL, 0, NULL), XOR_STATUS_ERR_UTF8);
    expect("send: id buffer without len", xor_send(chat, S("alice@example.org"), S("x"), (uint8_t *)buf, sizeof buf, NULL), XOR_STATUS_ERR_NULL);
    expect("subscribe: not a JID", xor_subscribe(chat, S("@@")), XOR_STATUS_ERR_JID);
    expect("approve: invalid UTF-8", xor_approve(chat, bad_utf8, sizeof bad_utf8), XOR_STATUS_ERR_UTF8);
    expect("presence: show out of range", xor_set_presence(chat, 99, NULL, 0), XOR_STATUS_ERR_INVALID);
    expect("presence: invalid UTF-8 status", xor_set_presence(chat, XOR_SHOW_AWAY, bad_utf8, sizeof bad_utf8), XOR_STATUS_ERR_UTF8);
    expect("presence: no status", xor_set_presence(chat, XOR_SHOW_DND, NULL, 0), XOR_STATUS_OK);
    expect("poll NULL event", xor_poll(chat, NULL, 0), XOR_STATUS_ERR_NULL);
    expect("jid: small buffer", xor_jid(chat, (uint8_t *)buf, 4, &len), XOR_STATUS_ERR_BUFFER);
    if (len != strlen("alice@example.org/game")) { fprintf(stderr, "FAIL jid length %zu\n", len); failures++; }
    expect("jid: NULL len", xor_jid(chat, (uint8_t *)buf, sizeof buf, NULL), XOR_STATUS_ERR_NULL);
    expect("jid", xor_jid(chat, (uint8_t *)buf, sizeof buf, &len), XOR_STATUS_OK);
    expect("dropped: NULL out", xor_dropped_events(chat, NULL), XOR_STATUS_ERR_NULL);
    expect("last_error: NULL buffer", xor_last_error(NULL, 0, &len), XOR_STATUS_ERR_BUFFER);

    /* After close. */
    expect("close", xor_close(chat), XOR_STATUS_OK);
    expect("close twice", xor_close(chat), XOR_STATUS_ERR_HANDLE);
    expect("send after close", xor_send(chat, S("bob@example.org"), S("x"), NULL, 0, NULL), XOR_STATUS_ERR_HANDLE);
    expect("poll after close", xor_poll(chat, &ev, 0), XOR_STATUS_ERR_HANDLE);
    expect("presence after close", xor_set_unavailable(chat), XOR_STATUS_ERR_HANDLE);
    expect("savedata after close", xor_savedata(chat, (uint8_t *)buf, sizeof buf, &len), XOR_STATUS_ERR_HANDLE);
    expect("close handle 0", xor_close(0), XOR_STATUS_ERR_HANDLE);
    expect("options_free", xor_options_free(o), XOR_STATUS_OK);
    free(pem);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("all bad input refused with its status\n");
    return 0;
}
