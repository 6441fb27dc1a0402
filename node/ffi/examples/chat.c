#define _GNU_SOURCE
/*
 * Two players chat through libxor, both in this process: alice takes events with
 * xor_poll from her "game loop", bob gets them through a callback on a thread he
 * names. They enroll over HTTPS with a password, join the overlay, subscribe, and
 * exchange messages both ways.
 *
 *   cc chat.c -I../include -L<target>/debug -lxor -o chat
 *   ./chat OVERLAY CONFIG_URL ROOT_PEM_FILE PASSWORD
 *
 * Exit status 0 when everything arrived; the test suite runs it under valgrind.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xor.h"

#define S(str) (const uint8_t *)(str), strlen(str)

static void die(const char *what, XorStatus st) {
    char err[512];
    size_t len = 0;
    xor_last_error((uint8_t *)err, sizeof err, &len);
    fprintf(stderr, "chat.c: %s failed (%d): %s\n", what, (int)st, err);
    exit(1);
}

#define CHECK(call)                           \
    do {                                      \
        XorStatus st_ = (call);               \
        if (st_ != XOR_STATUS_OK) die(#call, st_); \
    } while (0)

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(1); }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

/* What bob's callback saw, read by the main thread. */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static char bob_got[256];
static char bob_thread[32];
static int bob_requests;

static void on_bob_event(void *user, const XorEvent *ev) {
    int *calls = user;
    pthread_mutex_lock(&seen_lock);
    (*calls)++;
    pthread_getname_np(pthread_self(), bob_thread, sizeof bob_thread);
    if (ev->kind == XOR_EVENT_KIND_MESSAGE && ev->text_len < sizeof bob_got)
        memcpy(bob_got, ev->text, ev->text_len + 1);
    if (ev->kind == XOR_EVENT_KIND_SUBSCRIPTION_REQUEST) bob_requests++;
    pthread_mutex_unlock(&seen_lock);
}

static XorOptions options(const char *overlay, const char *url, const char *pem,
                          size_t pem_len, const char *user, const char *password) {
    XorOptions o;
    CHECK(xor_options_new(S(overlay), &o));
    CHECK(xor_options_config_url(o, S(url)));
    CHECK(xor_options_http_roots_pem(o, (const uint8_t *)pem, pem_len));
    CHECK(xor_options_enroll(o, S(user), S(password)));
    CHECK(xor_options_resource(o, S("c-game")));
    CHECK(xor_options_listen(o, S("127.0.0.1:0")));
    return o;
}

/* Polls alice until an event of `kind` (with `text`, if given) arrives. */
static int alice_waits(XorChat alice, XorEventKind kind, const char *text) {
    for (int i = 0; i < 200; i++) {
        XorEvent ev;
        XorStatus st = xor_poll(alice, &ev, 100);
        if (st == XOR_STATUS_NO_EVENT) continue;
        if (st != XOR_STATUS_OK) die("xor_poll", st);
        if (ev.kind == kind &&
            (!text || (ev.text_len == strlen(text) && memcmp(ev.text, text, ev.text_len) == 0))) {
            printf("alice got event %d from %.*s: %.*s\n", (int)ev.kind, (int)ev.from_len,
                   (const char *)ev.from, (int)ev.text_len, (const char *)ev.text);
            return 1;
        }
    }
    return 0;
}

static int bob_waits(int (*done)(void)) {
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&seen_lock);
        int ok = done();
        pthread_mutex_unlock(&seen_lock);
        if (ok) return 1;
        usleep(100 * 1000);
    }
    return 0;
}
static int bob_has_message(void) { return strcmp(bob_got, "hello from C") == 0; }
static int bob_has_request(void) { return bob_requests > 0; }

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s OVERLAY CONFIG_URL ROOT_PEM_FILE PASSWORD\n", argv[0]);
        return 2;
    }
    const char *overlay = argv[1], *url = argv[2], *password = argv[4];
    size_t pem_len;
    char *pem = read_file(argv[3], &pem_len);

    XorOptions ao = options(overlay, url, pem, pem_len, "alice@example.org", password);
    CHECK(xor_options_start_overlay(ao, 1));
    XorChat alice;
    CHECK(xor_start(ao, &alice));
    CHECK(xor_options_free(ao));

    char addr[64];
    size_t addr_len;
    CHECK(xor_overlay_address(alice, (uint8_t *)addr, sizeof addr, &addr_len));

    int bob_calls = 0;
    XorOptions bo = options(overlay, url, pem, pem_len, "bob@example.org", password);
    CHECK(xor_options_bootstrap(bo, (const uint8_t *)addr, addr_len));
    CHECK(xor_options_callback(bo, on_bob_event, &bob_calls, S("game-events")));
    XorChat bob;
    CHECK(xor_start(bo, &bob));
    CHECK(xor_options_free(bo));
    free(pem);

    char jid[128];
    size_t jid_len;
    CHECK(xor_jid(alice, (uint8_t *)jid, sizeof jid, &jid_len));
    printf("alice is %s, bootstrap %s\n", jid, addr);

    /* alice -> bob, to the bare JID; bob's callback sees it on "game-events". */
    char id[128];
    size_t id_len;
    CHECK(xor_send(alice, S("bob@example.org"), S("hello from C"), (uint8_t *)id, sizeof id, &id_len));
    if (!bob_waits(bob_has_message)) { fprintf(stderr, "bob never got alice's message\n"); return 1; }
    printf("bob got \"%s\" on thread %s (message id %s)\n", bob_got, bob_thread, id);
    if (strcmp(bob_thread, "game-events") != 0) { fprintf(stderr, "callback on the wrong thread\n"); return 1; }

    /* bob -> alice's full JID; alice polls it from her loop. */
    CHECK(xor_send(bob, (const uint8_t *)jid, jid_len, S("hello back"), NULL, 0, NULL));
    if (!alice_waits(alice, XOR_EVENT_KIND_MESSAGE, "hello back")) { fprintf(stderr, "alice never got bob's answer\n"); return 1; }

    /* Presence subscription: alice asks, bob approves, alice sees bob's status. */
    CHECK(xor_subscribe(alice, S("bob@example.org")));
    if (!bob_waits(bob_has_request)) { fprintf(stderr, "bob never got the request\n"); return 1; }
    CHECK(xor_approve(bob, S("alice@example.org")));
    if (!alice_waits(alice, XOR_EVENT_KIND_SUBSCRIPTION_APPROVED, NULL)) { fprintf(stderr, "no approval\n"); return 1; }
    CHECK(xor_set_presence(bob, XOR_SHOW_AWAY, S("in a match")));
    if (!alice_waits(alice, XOR_EVENT_KIND_PRESENCE, "in a match")) { fprintf(stderr, "no presence\n"); return 1; }

    /* Savedata: ask for the size, then fetch it. */
    size_t need = 0;
    if (xor_savedata(alice, NULL, 0, &need) != XOR_STATUS_ERR_BUFFER || need == 0) { fprintf(stderr, "size query\n"); return 1; }
    char *saved = malloc(need + 1);
    CHECK(xor_savedata(alice, (uint8_t *)saved, need + 1, &need));
    if (strstr(saved, "xor-savedata/1") == NULL) { fprintf(stderr, "savedata: %s\n", saved); return 1; }
    free(saved);

    uint64_t dropped = 1;
    CHECK(xor_dropped_events(alice, &dropped));
    CHECK(xor_close(bob));
    CHECK(xor_close(alice));
    printf("ok: %d callbacks, %llu events dropped\n", bob_calls, (unsigned long long)dropped);
    return 0;
}
