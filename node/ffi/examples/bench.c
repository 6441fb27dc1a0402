/*
 * What one embedded node costs, and how fast messages go through the C API:
 *   1. memory (RSS) of the process before and after one chat starts, and after it
 *      sat idle on its own overlay for IDLE seconds, with the CPU time it used idling;
 *   2. a second chat joins; N messages go from alice (xor_send) to bob's full JID
 *      while another thread takes them with xor_poll: messages per second.
 *
 *   ./bench OVERLAY CONFIG_URL ROOT_PEM_FILE PASSWORD N IDLE
 *
 * Run by node/ffi/tests/bench.rs (see BENCHMARKS.md for the command).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "xor.h"

#define S(str) (const uint8_t *)(str), strlen(str)

static void check(XorStatus st, const char *what) {
    if (st == XOR_STATUS_OK) return;
    char err[512] = "";
    size_t len;
    xor_last_error((uint8_t *)err, sizeof err, &len);
    fprintf(stderr, "%s: %d %s\n", what, (int)st, err);
    exit(1);
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *pem;
static size_t pem_len;
static const char *overlay, *url, *password;

static XorChat start(const char *user, const char *bootstrap) {
    XorOptions o;
    check(xor_options_new(S(overlay), &o), "options");
    check(xor_options_config_url(o, S(url)), "url");
    check(xor_options_http_roots_pem(o, (const uint8_t *)pem, pem_len), "roots");
    check(xor_options_enroll(o, S(user), S(password)), "enroll");
    check(xor_options_listen(o, S("127.0.0.1:0")), "listen");
    check(xor_options_event_capacity(o, 1 << 20), "capacity");
    if (bootstrap) check(xor_options_bootstrap(o, S(bootstrap)), "bootstrap");
    else check(xor_options_start_overlay(o, 1), "start overlay");
    XorChat c;
    check(xor_start(o, &c), user);
    check(xor_options_free(o), "free");
    return c;
}

struct receiver { XorChat bob; long want, got; double last; };

static void *receive(void *arg) {
    struct receiver *r = arg;
    XorEvent ev;
    while (r->got < r->want) {
        XorStatus st = xor_poll(r->bob, &ev, 10000);
        if (st == XOR_STATUS_NO_EVENT) break;
        check(st, "poll");
        if (ev.kind == XOR_EVENT_KIND_MESSAGE) r->got++;
    }
    r->last = now();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 7) return 2;
    overlay = argv[1], url = argv[2], password = argv[4];
    long n = atol(argv[5]), idle = atol(argv[6]);
    FILE *f = fopen(argv[3], "rb");
    pem = malloc(8192);
    pem_len = fread(pem, 1, 8192, f);
    fclose(f);

    long rss0 = rss_kib();
    XorChat alice = start("alice@example.org", NULL);
    long rss1 = rss_kib();
    double cpu0 = cpu_seconds();
    sleep((unsigned)idle);
    double cpu1 = cpu_seconds();
    long rss2 = rss_kib();
    printf("memory: %ld KiB before, %ld KiB with one chat (+%ld), %ld KiB after %ld s idle\n",
           rss0, rss1, rss1 - rss0, rss2, idle);
    printf("idle CPU: %.3f s in %ld s (%.2f%% of one core)\n", cpu1 - cpu0, idle,
           100.0 * (cpu1 - cpu0) / (double)idle);

    char addr[64];
    size_t len;
    check(xor_overlay_address(alice, (uint8_t *)addr, sizeof addr, &len), "address");
    XorChat bob = start("bob@example.org", addr);
    char bob_jid[128];
    check(xor_jid(bob, (uint8_t *)bob_jid, sizeof bob_jid, &len), "jid");
    /* Warm up: the first message resolves bob and opens the direct stream. */
    check(xor_send(alice, (const uint8_t *)bob_jid, len, S("warm-up"), NULL, 0, NULL), "send");
    struct receiver warm = {bob, 1, 0, 0};
    receive(&warm);

    struct receiver r = {bob, n, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, receive, &r);
    double t0 = now(), c0 = cpu_seconds();
    char body[64];
    for (long i = 0; i < n; i++) {
        int bl = snprintf(body, sizeof body, "message %ld", i);
        check(xor_send(alice, (const uint8_t *)bob_jid, len, (const uint8_t *)body, (size_t)bl, NULL, 0, NULL), "send");
    }
    double sent = now();
    pthread_join(t, NULL);
    double c1 = cpu_seconds();
    printf("throughput: %ld of %ld messages in %.3f s: %.0f messages/s (sending took %.3f s); %.1f us CPU per message\n",
           r.got, n, r.last - t0, (double)r.got / (r.last - t0), sent - t0, 1e6 * (c1 - c0) / (double)n);
    check(xor_close(bob), "close");
    check(xor_close(alice), "close");
    free(pem);
    return r.got == n ? 0 : 1;
}
