/*
 * bench/loadgen.c - the benchmark's load generator: one C program, every workload, any server.
 *
 *   loadgen --url ws://127.0.0.1:PORT/ --workload rr16 [--duration S] [--warmup S] ...
 *   loadgen --url tcp://127.0.0.1:PORT --workload conc100x16        (raw TCP echo servers)
 *   loadgen --self-test
 *
 * One workload per run; prints ONE JSON object line on stdout (idle workloads print a
 * {"ready": true, ...} line first); errors go to stderr with a non-zero exit status. Built by
 * bench/build.py (gcc -O2, -lz). See bench/README.md for the workloads.
 *
 * Why C: the client must never be the bottleneck, and must cost the same whatever the server.
 * epoll with non-blocking I/O for many connections; blocking send/recv for one connection with
 * one message in flight (2 syscalls per round trip, the least any client can do). Frames are
 * built and masked once before the clock starts (RFC 6455 lets a client reuse a mask; servers
 * cannot tell). Its own handshake (random key, checks the 101 and Sec-WebSocket-Accept with a
 * small SHA-1 below: no OpenSSL needed), its own frame reader, permessage-deflate (RFC 7692)
 * with zlib raw deflate. Every echo's length and type is checked, its content on the first
 * message of every connection and every 1024th after; a mismatch is an error, never a number.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xA

#define READ_CHUNK 16384
#define MAX_EVENTS 1024
#define WARMUP_ROUNDS 2 /* broadcast rounds not measured */
#define CHECK_EVERY 1024 /* content check: first message of a connection, then every Nth */

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- workloads --------------------------------------------------------------------------- */

typedef enum { K_RR, K_STREAM, K_IDLE, K_HS, K_BCAST } kind_t;

typedef struct {
    const char *name;
    kind_t kind;
    size_t size;   /* payload bytes */
    int opcode;
    int conns;     /* connections (hs: in parallel; bcast: clients) */
    int inflight;  /* messages in flight per connection (stream) */
    int deflate;   /* offer permessage-deflate and compress what is sent */
} workload_t;

static const workload_t WORKLOADS[] = {
    {"rr16", K_RR, 16, OP_TEXT, 1, 1, 0},
    {"rr1k", K_RR, 1024, OP_TEXT, 1, 1, 0},
    {"conc100x1", K_STREAM, 64, OP_TEXT, 100, 1, 0},
    {"conc100x16", K_STREAM, 64, OP_TEXT, 100, 16, 0},
    {"big1m", K_STREAM, 1 << 20, OP_BINARY, 1, 1, 0},
    {"big16m", K_STREAM, 16 << 20, OP_BINARY, 1, 1, 0},
    {"idle5000", K_IDLE, 0, 0, 5000, 0, 0},
    {"hs", K_HS, 0, 0, 8, 0, 0},
    {"bcast1k", K_BCAST, 64, OP_TEXT, 1000, 1, 0},
    {"bcast10k", K_BCAST, 64, OP_TEXT, 10000, 1, 0},
    {"rr16z", K_RR, 16, OP_TEXT, 1, 1, 1},
    {"big1mz", K_STREAM, 1 << 20, OP_BINARY, 1, 1, 1},
    {"idle5000z", K_IDLE, 0, 0, 5000, 0, 1},
    {"conc100rr16", K_STREAM, 16, OP_TEXT, 100, 1, 0},
    {"conc100rr1k", K_STREAM, 1024, OP_TEXT, 100, 1, 0},
};

/* ---- connections ------------------------------------------------------------------------- */

typedef enum { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSING, S_DONE } state_t;

typedef struct {
    const uint8_t *p;
    size_t len;
    uint8_t *owned; /* freed once sent, or NULL for shared bytes (the prebuilt frame) */
} seg_t;

typedef struct {
    int fd;
    state_t state;
    uint32_t events; /* what epoll watches now */
    /* input: bytes in [in_off, in_len) not parsed yet; need = bytes the next frame needs */
    uint8_t *in;
    size_t in_off, in_len, in_cap, need;
    /* output: a ring of segments, q_off bytes of the head already sent */
    seg_t *q;
    size_t q_head, q_count, q_cap, q_off;
    char accept[32]; /* the Sec-WebSocket-Accept we expect */
    int deflate;     /* permessage-deflate negotiated */
    z_stream *inflater;
    uint8_t *frag; /* a fragmented message being assembled */
    size_t frag_len, frag_cap;
    int frag_opcode, frag_rsv1, in_frag;
    uint64_t received; /* complete messages received (while open) */
    int inflight;
    uint64_t raw_bytes; /* raw TCP: bytes received not yet counted as a message */
    int raw_checked;
} conn_t;

typedef struct {
    uint64_t wall;
    double self;   /* this process: user + system seconds */
    double server; /* the server process, or -1 */
    double busy;   /* all CPUs busy, or -1 */
} snap_t;

static struct {
    const workload_t *w;
    /* options */
    double duration, warmup, timeout, hold, max_time;
    long long max_count;
    int conns, inflight, parallel, server_pid, cpu;
    /* target */
    const char *url;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char hostport[300];
    char path[1024];
    int raw;
    /* the message */
    uint8_t *payload;
    size_t size;
    int opcode;
    uint8_t *frame;
    size_t frame_len;
    int frame_bits;  /* client window the frame was compressed for (0: not compressed) */
    uint8_t *scratch; /* inflated messages */
    size_t scratch_cap;
    uint8_t close_frame[8];
    char extension[128]; /* the server's Sec-WebSocket-Extensions answer, for the result */
    /* the loop */
    int epfd, stdin_closed;
    conn_t *conns_v;
    int nconns, next_open, opened, connecting, closing;
    uint64_t last_progress;
    /* counters */
    uint64_t total, count, inflight_total, unclean;
    int measuring, sending;
    /* broadcast */
    uint64_t round, round_got, round_done_at;
} G;

static int stdin_tag;

/* ---- small helpers ----------------------------------------------------------------------- */

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "loadgen %s: ", G.w ? G.w->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fail("out of memory (%zu bytes)", n);
    return p;
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) fail("out of memory (%zu bytes)", n);
    return p;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t seconds_ns(double s) { return (uint64_t)(s * 1e9); }

static uint64_t rng_state;

static uint64_t rng(void) { /* xorshift64*: masks, keys, payloads; not for secrets */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void rand_bytes(uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(rng() >> 56);
}

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept ------------------------------------------- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
    for (int t = 16; t < 80; t++) w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; t++) {
        uint32_t f, k;
        if (t < 20) f = (b & c) | (~b & d), k = 0x5A827999;
        else if (t < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (t < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else f = b ^ c ^ d, k = 0xCA62C1D6;
        uint32_t tmp = rol(a, 5) + f + e + k + w[t];
        e = d, d = c, c = rol(b, 30), b = a, a = tmp;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t i = 0;
    for (; i + 64 <= len; i += 64) sha1_block(h, msg + i);
    uint8_t tail[128] = {0};
    size_t rem = len - i, tlen = rem + 9 <= 64 ? 64 : 128;
    memcpy(tail, msg + i, rem);
    tail[rem] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int k = 0; k < 8; k++) tail[tlen - 1 - k] = (uint8_t)(bits >> (8 * k));
    sha1_block(h, tail);
    if (tlen == 128) sha1_block(h, tail + 64);
    for (int k = 0; k < 20; k++) out[k] = (uint8_t)(h[k / 4] >> (24 - 8 * (k % 4)));
}

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = T[v >> 18 & 63];
        out[o++] = T[v >> 12 & 63];
        out[o++] = i + 1 < n ? T[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? T[v & 63] : '=';
    }
    out[o] = 0;
}

static void accept_for(const char *key, char out[32]) {
    char buf[128];
    uint8_t digest[20];
    int n = snprintf(buf, sizeof buf, "%s%s", key, GUID);
    sha1((const uint8_t *)buf, (size_t)n, digest);
    base64(digest, 20, out);
}

/* ---- frames ------------------------------------------------------------------------------ */

/* A masked client frame: header, mask, payload ^ mask. Returns its length. */
static size_t build_frame(uint8_t *out, int b0, const uint8_t *data, size_t len) {
    size_t h = 0;
    out[h++] = (uint8_t)b0;
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int k = 7; k >= 0; k--) out[h++] = (uint8_t)((uint64_t)len >> (8 * k));
    }
    uint8_t *mask = out + h;
    rand_bytes(mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) out[h + i] = data[i] ^ mask[i & 3];
    return h + len;
}

/* Words from a small vocabulary: valid UTF-8 (ASCII) that compresses about as well as text
 * does (~3x), the same for every server. */
static void make_payload(void) {
    static const char *WORDS[] = {"lorem", "ipsum", "dolor", "sit", "amet", "consectetur",
                                  "adipiscing", "elit", "sed", "do", "eiusmod", "tempor",
                                  "incididunt", "ut", "labore", "magna"};
    G.payload = xmalloc(G.size + 16);
    size_t o = 0;
    while (o < G.size) {
        const char *word = WORDS[rng() >> 60];
        size_t n = strlen(word);
        if (o + n + 1 > G.size) n = G.size - o;
        memcpy(G.payload + o, word, n);
        o += n;
        if (o < G.size) G.payload[o++] = ' ';
    }
}

/* The message frame, built once; compressed for a client window of `bits` (0: not). Each
 * compressed frame is deflated on its own, so it is valid whatever context takeover the server
 * chose: it only never refers back to earlier messages. */
static void make_frame(int bits) {
    const uint8_t *data = G.payload;
    size_t len = G.size;
    uint8_t *packed = NULL;
    int b0 = 0x80 | G.opcode;
    if (bits) {
        if (bits < 9) fail("client_max_window_bits=%d: zlib needs 9 or more", bits);
        z_stream z;
        memset(&z, 0, sizeof z);
        if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY))
            fail("deflateInit2 failed");
        size_t cap = deflateBound(&z, (uLong)len) + 64;
        packed = xmalloc(cap);
        z.next_in = (Bytef *)data;
        z.avail_in = (uInt)len;
        z.next_out = packed;
        z.avail_out = (uInt)cap;
        if (deflate(&z, Z_SYNC_FLUSH) != Z_OK || z.avail_in) fail("deflate failed");
        len = cap - z.avail_out;
        deflateEnd(&z);
        if (len < 4 || memcmp(packed + len - 4, "\x00\x00\xff\xff", 4)) fail("bad deflate tail");
        len -= 4; /* RFC 7692 7.2.1: strip the sync flush's empty block */
        data = packed;
        b0 |= 0x40;
    }
    free(G.frame);
    G.frame = xmalloc(len + 14);
    G.frame_len = build_frame(G.frame, b0, data, len);
    G.frame_bits = bits;
    free(packed);
}

/* ---- CPU accounting ---------------------------------------------------------------------- */

static double proc_cpu(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double machine_busy(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8];
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8) return -1;
    /* user nice system [idle iowait] irq softirq steal; guest time is already in user */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static snap_t snapshot(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    snap_t s;
    s.wall = now_ns();
    s.self = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
             ru.ru_stime.tv_usec / 1e6;
    s.server = G.server_pid > 0 ? proc_cpu(G.server_pid) : -1;
    s.busy = machine_busy();
    return s;
}

/* ---- output queue ------------------------------------------------------------------------ */

static void set_events(conn_t *c, uint32_t events) {
    if (c->events == events || c->fd < 0) return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(G.epfd, EPOLL_CTL_MOD, c->fd, &ev)) fail("epoll_ctl: %s", strerror(errno));
    c->events = events;
}

static void push(conn_t *c, const uint8_t *p, size_t len, uint8_t *owned) {
    if (c->q_count == c->q_cap) {
        size_t cap = c->q_cap ? c->q_cap * 2 : 32;
        seg_t *q = xmalloc(cap * sizeof *q);
        for (size_t i = 0; i < c->q_count; i++) q[i] = c->q[(c->q_head + i) % c->q_cap];
        free(c->q);
        c->q = q, c->q_cap = cap, c->q_head = 0;
    }
    c->q[(c->q_head + c->q_count++) % c->q_cap] = (seg_t){p, len, owned};
}

/* Send what the queue holds without blocking; returns 1 once it is empty. */
static int flush(conn_t *c) {
    while (c->q_count) {
        struct iovec iov[64];
        size_t n = 0;
        for (; n < c->q_count && n < 64; n++) {
            seg_t *s = &c->q[(c->q_head + n) % c->q_cap];
            size_t skip = n ? 0 : c->q_off;
            iov[n].iov_base = (void *)(s->p + skip);
            iov[n].iov_len = s->len - skip;
        }
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = n};
        ssize_t sent = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            fail("send: %s", strerror(errno));
        }
        size_t left = (size_t)sent;
        while (left) {
            seg_t *s = &c->q[c->q_head];
            size_t rest = s->len - c->q_off;
            if (left < rest) {
                c->q_off += left;
                break;
            }
            left -= rest;
            free(s->owned);
            c->q_head = (c->q_head + 1) % c->q_cap, c->q_count--, c->q_off = 0;
        }
    }
    return 1;
}

static void flush_blocking(conn_t *c) {
    uint64_t deadline = now_ns() + seconds_ns(G.timeout);
    while (!flush(c)) {
        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
        if (now_ns() > deadline) fail("could not send for %g s", G.timeout);
        poll(&p, 1, 100);
    }
}

static void watch(conn_t *c) { set_events(c, EPOLLIN | (c->q_count ? EPOLLOUT : 0)); }

/* ---- connection life --------------------------------------------------------------------- */

static void on_message(conn_t *c);
static void on_open(conn_t *c);
static void on_closed(conn_t *c);

static void close_conn(conn_t *c) {
    if (c->fd >= 0) close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    if (c->state == S_CLOSING) G.closing--;
    c->state = S_DONE;
    on_closed(c);
}

static void reset_conn(conn_t *c) {
    while (c->q_count) {
        free(c->q[c->q_head].owned);
        c->q_head = (c->q_head + 1) % c->q_cap, c->q_count--;
    }
    c->q_off = 0;
    c->in_off = c->in_len = c->need = 0;
    c->in_frag = 0;
    c->frag_len = 0;
    c->received = 0;
    c->inflight = 0;
    c->raw_bytes = 0;
    c->raw_checked = 0;
    c->deflate = 0;
    if (c->inflater) {
        inflateEnd(c->inflater);
        free(c->inflater);
        c->inflater = NULL;
    }
}

static void start_connect(conn_t *c) {
    reset_conn(c);
    int fd = socket(G.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&G.addr, G.addrlen) && errno != EINPROGRESS)
        fail("connect to %s: %s", G.url, strerror(errno));
    c->fd = fd;
    c->state = S_CONNECTING;
    c->events = EPOLLOUT;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(G.epfd, EPOLL_CTL_ADD, fd, &ev)) fail("epoll_ctl: %s", strerror(errno));
    G.connecting++;
}

static void send_handshake(conn_t *c) {
    uint8_t raw_key[16];
    char key[32];
    rand_bytes(raw_key, sizeof raw_key);
    base64(raw_key, sizeof raw_key, key);
    accept_for(key, c->accept);
    char *req = xmalloc(2048);
    int n = snprintf(req, 2048,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     G.path, G.hostport, key,
                     G.w->deflate
                         ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                         : "");
    push(c, (uint8_t *)req, (size_t)n, (uint8_t *)req);
    c->state = S_HANDSHAKE;
    flush(c);
}

static void on_connected(conn_t *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == EINPROGRESS) return;
    if (err) fail("connect to %s: %s", G.url, strerror(err));
    G.connecting--;
    G.last_progress = now_ns();
    if (G.raw) {
        /* raw TCP has no handshake; one echo of the frame stands for it: it proves that the
         * server accepted the connection (a connect completes in the kernel before the server
         * accepts, so without it the client would outrun the accept queue and wait for SYN
         * retransmits) */
        push(c, G.frame, G.frame_len, NULL);
        c->state = S_HANDSHAKE;
        flush(c);
    } else {
        send_handshake(c);
    }
    if (c->state != S_DONE) watch(c);
}

/* Start our side of the close handshake (raw TCP: just close). */
static void start_close(conn_t *c) {
    if (G.raw) {
        close_conn(c);
        return;
    }
    push(c, G.close_frame, sizeof G.close_frame, NULL);
    c->state = S_CLOSING;
    G.closing++;
    flush(c);
}

/* ---- handshake response ------------------------------------------------------------------ */

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) *--e = 0;
    return s;
}

/* Check a permessage-deflate answer; returns the client window bits we must use. */
static int parse_deflate(char *value) {
    int bits = 15;
    char *save = NULL;
    if (strchr(value, ',')) fail("server accepted more than one extension: %s", value);
    char *tok = strtok_r(value, ";", &save);
    if (!tok || strcasecmp(trim(tok), "permessage-deflate")) fail("unknown extension %s", value);
    while ((tok = strtok_r(NULL, ";", &save))) {
        char *param = trim(tok), *eq = strchr(param, '=');
        if (eq) *eq++ = 0;
        param = trim(param);
        if (!strcasecmp(param, "client_max_window_bits")) {
            if (!eq) fail("client_max_window_bits without a value in the answer");
            bits = atoi(trim(eq) + (*trim(eq) == '"'));
            if (bits < 8 || bits > 15) fail("bad client_max_window_bits=%s", eq);
        } else if (strcasecmp(param, "server_max_window_bits") &&
                   strcasecmp(param, "server_no_context_takeover") &&
                   strcasecmp(param, "client_no_context_takeover")) {
            fail("unknown permessage-deflate parameter %s", param);
        }
    }
    return bits;
}

/* Parse the answer to our upgrade request; returns the bytes used, 0 if incomplete. */
static size_t handle_response(conn_t *c, const uint8_t *p, size_t avail) {
    const uint8_t *end = memmem(p, avail, "\r\n\r\n", 4);
    if (!end) {
        if (avail > 65536) fail("handshake response too long");
        return 0;
    }
    size_t used = (size_t)(end - p) + 4;
    char *text = strndup((const char *)p, used);
    if (strncmp(text, "HTTP/1.1 101", 12)) {
        text[strcspn(text, "\r\n")] = 0;
        fail("expected HTTP/1.1 101, got %.200s", text);
    }
    char *accept = NULL, *extension = NULL, *save = NULL;
    strtok_r(text, "\n", &save); /* status line */
    for (char *line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = 0;
        char *name = trim(line), *value = trim(colon + 1);
        if (!strcasecmp(name, "sec-websocket-accept")) accept = value;
        else if (!strcasecmp(name, "sec-websocket-extensions")) extension = value;
    }
    if (!accept || strcmp(accept, c->accept))
        fail("bad Sec-WebSocket-Accept %s (expected %s)", accept ? accept : "(none)", c->accept);
    if (extension && *extension) {
        if (!G.w->deflate) fail("server sent an extension we did not offer: %s", extension);
        snprintf(G.extension, sizeof G.extension, "%s", extension);
        int bits = parse_deflate(extension);
        /* built once, before any connection queues it: the same server answers alike */
        if (!G.frame_bits) make_frame(bits);
        else if (G.frame_bits != bits) fail("client_max_window_bits changed to %d", bits);
        c->deflate = 1;
    } else if (G.w->deflate) {
        fail("server declined permessage-deflate");
    }
    free(text);
    c->state = S_OPEN;
    G.opened++;
    on_open(c);
    return used;
}

/* ---- frame reader ------------------------------------------------------------------------ */

static void check_content(conn_t *c, const uint8_t *data) {
    if ((c->received % CHECK_EVERY) == 0 && memcmp(data, G.payload, G.size))
        fail("echo %llu differs from the message sent", (unsigned long long)c->received);
}

static void inflate_message(conn_t *c, const uint8_t **data, size_t *len) {
    static const uint8_t TAIL[4] = {0x00, 0x00, 0xff, 0xff};
    if (!c->inflater) {
        c->inflater = calloc(1, sizeof(z_stream));
        /* -15 inflates whatever window the server chose */
        if (!c->inflater || inflateInit2(c->inflater, -15) != Z_OK) fail("inflateInit2 failed");
    }
    z_stream *z = c->inflater;
    z->next_out = G.scratch;
    z->avail_out = (uInt)G.scratch_cap;
    z->next_in = (Bytef *)*data;
    z->avail_in = (uInt)*len;
    int r = inflate(z, Z_SYNC_FLUSH);
    if (r == Z_OK || r == Z_BUF_ERROR) {
        z->next_in = (Bytef *)TAIL;
        z->avail_in = 4;
        r = inflate(z, Z_SYNC_FLUSH);
    }
    if (r == Z_STREAM_END) r = inflateReset(z); /* a final block: the next starts afresh */
    if ((r != Z_OK && r != Z_BUF_ERROR) || z->avail_in)
        fail("inflate failed (%d) or message longer than sent", r);
    if (!z->avail_out) fail("inflated message longer than the one sent");
    *data = G.scratch;
    *len = G.scratch_cap - z->avail_out;
}

static void deliver(conn_t *c, int opcode, int rsv1, const uint8_t *data, size_t len) {
    if (c->state != S_OPEN) return; /* in-flight echoes after our close frame */
    if (rsv1) {
        if (!c->deflate) fail("compressed message without permessage-deflate");
        inflate_message(c, &data, &len);
    }
    if (G.w->kind == K_IDLE || G.w->kind == K_HS) fail("unexpected message (%zu bytes)", len);
    if (opcode != G.opcode || len != G.size)
        fail("echo of opcode %d, %zu bytes; sent opcode %d, %zu bytes", opcode, len, G.opcode,
             G.size);
    check_content(c, data);
    c->received++;
    on_message(c);
}

static void on_control(conn_t *c, int opcode, const uint8_t *data, size_t len) {
    if (opcode == OP_PING) {
        if (c->state != S_OPEN) return; /* no frame may follow our close frame */
        uint8_t *pong = xmalloc(len + 6);
        size_t n = build_frame(pong, 0x80 | OP_PONG, data, len);
        push(c, pong, n, pong);
    } else if (opcode == OP_CLOSE) {
        if (c->state != S_CLOSING) {
            int code = len >= 2 ? data[0] << 8 | data[1] : 1005;
            fail("server closed the connection: code %d %.*s", code, (int)(len > 2 ? len - 2 : 0),
                 (const char *)data + 2);
        }
        close_conn(c);
    } else if (opcode != OP_PONG) {
        fail("unknown control opcode %d", opcode);
    }
}

static void on_frame(conn_t *c, uint8_t b0, const uint8_t *data, size_t len) {
    int fin = b0 & 0x80, rsv1 = b0 & 0x40, opcode = b0 & 0x0f;
    if (b0 & 0x30) fail("RSV2/RSV3 set");
    if (opcode >= 0x8) {
        if (!fin || len > 125 || rsv1) fail("bad control frame");
        on_control(c, opcode, data, len);
    } else if (opcode == OP_CONT) {
        if (!c->in_frag) fail("continuation frame outside a message");
        if (c->frag_len + len > c->frag_cap) {
            c->frag_cap = (c->frag_len + len) * 2;
            c->frag = xrealloc(c->frag, c->frag_cap);
        }
        memcpy(c->frag + c->frag_len, data, len);
        c->frag_len += len;
        if (fin) {
            c->in_frag = 0;
            deliver(c, c->frag_opcode, c->frag_rsv1, c->frag, c->frag_len);
        }
    } else if (opcode == OP_TEXT || opcode == OP_BINARY) {
        if (c->in_frag) fail("new message inside a fragmented one");
        if (fin) {
            deliver(c, opcode, rsv1, data, len);
            return;
        }
        c->in_frag = 1, c->frag_opcode = opcode, c->frag_rsv1 = rsv1, c->frag_len = 0;
        on_frame(c, OP_CONT, data, len); /* appends, without FIN */
    } else {
        fail("reserved opcode %d", opcode);
    }
}

static void parse(conn_t *c) {
    size_t off = c->in_off;
    c->need = 0;
    while (c->state == S_HANDSHAKE || c->state == S_OPEN || c->state == S_CLOSING) {
        const uint8_t *p = c->in + off;
        size_t avail = c->in_len - off;
        if (c->state == S_HANDSHAKE) {
            size_t used = handle_response(c, p, avail);
            if (!used) break;
            off += used;
            continue;
        }
        if (avail < 2) break;
        if (p[1] & 0x80) fail("masked frame from the server");
        size_t hdr = 2;
        uint64_t len = p[1] & 0x7f;
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)p[2] << 8 | p[3], hdr = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0, hdr = 10;
            for (int k = 2; k < 10; k++) len = len << 8 | p[k];
            if (len > ((uint64_t)1 << 32)) fail("frame of %llu bytes", (unsigned long long)len);
        }
        if (avail - hdr < len) {
            c->need = hdr + (size_t)len;
            break;
        }
        off += hdr + (size_t)len;
        on_frame(c, p[0], p + hdr, (size_t)len);
    }
    if (off >= c->in_len) c->in_off = c->in_len = 0;
    else c->in_off = off;
}

/* Raw TCP: count bytes; a "message" is frame_len bytes; the first one is compared in full. */
static void raw_input(conn_t *c, size_t n) {
    if (c->state == S_HANDSHAKE) { /* the echo that stands for a handshake */
        if (c->in_len < G.frame_len) {
            c->need = G.frame_len;
            return;
        }
        if (c->in_len > G.frame_len || memcmp(c->in, G.frame, G.frame_len))
            fail("echo differs from the bytes sent");
        c->in_len = c->need = 0;
        c->raw_checked = 1;
        c->state = S_OPEN;
        G.opened++;
        on_open(c);
        return;
    }
    c->raw_bytes += n;
    if (!c->raw_checked) {
        if (c->in_len < G.frame_len) {
            c->need = G.frame_len;
            return;
        }
        if (memcmp(c->in, G.frame, G.frame_len)) fail("echo differs from the bytes sent");
        c->raw_checked = 1;
        c->need = 0;
    }
    c->in_len = 0; /* nothing else is kept */
    while (c->raw_bytes >= G.frame_len && c->state == S_OPEN) {
        c->raw_bytes -= G.frame_len;
        c->received++;
        on_message(c);
    }
}

static void ensure_space(conn_t *c) {
    size_t have = c->in_len - c->in_off, want = READ_CHUNK;
    if (c->need > have && c->need - have > want) want = c->need - have;
    if (c->in_cap - c->in_len >= want) return;
    if (c->in_off) {
        memmove(c->in, c->in + c->in_off, have);
        c->in_len = have, c->in_off = 0;
        if (c->in_cap - c->in_len >= want) return;
    }
    size_t cap = c->in_len + want;
    if (cap < c->in_cap * 2) cap = c->in_cap * 2;
    c->in = xrealloc(c->in, cap);
    c->in_cap = cap;
}

/* Handle n new bytes at the end of the input buffer. */
static void consume(conn_t *c, size_t n) {
    c->in_len += n;
    if (G.raw) raw_input(c, n);
    else parse(c);
}

static void on_eof(conn_t *c, int err) {
    if (c->state == S_CLOSING) { /* closed without its close frame */
        G.unclean++;
        close_conn(c);
        return;
    }
    if (err) fail("connection error: %s", strerror(err));
    fail("server closed the connection (%s)", c->state == S_HANDSHAKE ? "during the handshake"
                                                                        : "without a close frame");
}

static void on_readable(conn_t *c) {
    for (;;) {
        ensure_space(c);
        size_t space = c->in_cap - c->in_len;
        ssize_t n = recv(c->fd, c->in + c->in_len, space, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            on_eof(c, errno);
            return;
        }
        if (n == 0) {
            on_eof(c, 0);
            return;
        }
        G.last_progress = now_ns();
        consume(c, (size_t)n);
        if (c->state == S_DONE) return;
        if (c->q_count) flush(c);
        if ((size_t)n < space) return;
    }
}

/* One turn of the event loop. */
static void pump(int timeout_ms, int stall_check, const char *waiting_for) {
    struct epoll_event ev[MAX_EVENTS];
    int n = epoll_wait(G.epfd, ev, MAX_EVENTS, timeout_ms);
    if (n < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        if (ev[i].data.ptr == &stdin_tag) {
            char buf[256];
            ssize_t r = read(0, buf, sizeof buf);
            if (r <= 0) {
                G.stdin_closed = 1;
                epoll_ctl(G.epfd, EPOLL_CTL_DEL, 0, NULL);
            }
            continue;
        }
        conn_t *c = ev[i].data.ptr;
        /* a connection closed earlier in this batch: its fd is gone */
        if (c->fd < 0 || c->state == S_DONE || c->state == S_IDLE) continue;
        if (c->state == S_CONNECTING) {
            on_connected(c);
            continue;
        }
        if (ev[i].events & EPOLLOUT) flush(c);
        if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        if (c->state != S_DONE) watch(c);
    }
    if (stall_check && now_ns() - G.last_progress > seconds_ns(G.timeout))
        fail("nothing received for %g s while waiting for %s", G.timeout, waiting_for);
}

/* ---- workload callbacks ------------------------------------------------------------------ */

static void on_open(conn_t *c) {
    if (G.w->kind == K_HS) start_close(c); /* hs: upgrade, then close straight away */
    else if (G.next_open < G.nconns) start_connect(&G.conns_v[G.next_open++]);
}

static void on_closed(conn_t *c) {
    (void)c;
    if (G.w->kind == K_HS) {
        G.total++;
        if (G.measuring && G.sending) G.count++;
    }
}

static void on_message(conn_t *c) {
    switch (G.w->kind) {
    case K_STREAM:
        if (c->inflight <= 0) fail("more echoes than messages sent");
        G.total++;
        if (G.measuring && G.sending) G.count++;
        if (G.sending) {
            push(c, G.frame, G.frame_len, NULL);
        } else {
            c->inflight--;
            G.inflight_total--;
        }
        break;
    case K_BCAST:
        if (c->received != G.round + 1)
            fail("a client got %llu messages by round %llu", (unsigned long long)c->received,
                 (unsigned long long)G.round + 1);
        if (++G.round_got == (uint64_t)G.nconns) G.round_done_at = now_ns();
        break;
    default: /* rr: the caller counts */
        break;
    }
}

/* ---- phases ------------------------------------------------------------------------------ */

static void open_all(int n) {
    G.conns_v = calloc((size_t)n, sizeof(conn_t));
    if (!G.conns_v) fail("out of memory");
    for (int i = 0; i < n; i++) G.conns_v[i].fd = -1;
    G.nconns = n;
    G.next_open = 0;
    G.last_progress = now_ns();
    int first = n < G.parallel ? n : G.parallel;
    while (G.next_open < first) start_connect(&G.conns_v[G.next_open++]);
    char what[64];
    snprintf(what, sizeof what, "%d handshakes", n);
    while (G.opened < n) pump(100, 1, what);
}

static void close_all(void) {
    for (int i = 0; i < G.nconns; i++) {
        conn_t *c = &G.conns_v[i];
        if (c->state == S_OPEN) start_close(c);
        if (c->state == S_CLOSING) watch(c);
    }
    uint64_t deadline = now_ns() + seconds_ns(G.timeout < 5 ? G.timeout : 5);
    while (G.closing > 0 && now_ns() < deadline) pump(100, 0, "close frames");
    for (int i = 0; i < G.nconns; i++) {
        conn_t *c = &G.conns_v[i];
        if (c->state == S_CLOSING) {
            G.unclean++;
            close_conn(c);
        } else if (c->fd >= 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile(uint64_t *v, size_t n, double q) {
    if (!n) return 0;
    size_t i = (size_t)(q * (double)n);
    return (double)v[i < n ? i : n - 1];
}

/* ---- result line ------------------------------------------------------------------------- */

static void emit(const char *unit, double rate, snap_t a, snap_t b, const char *extra) {
    double wall = (double)(b.wall - a.wall) / 1e9, self = b.self - a.self;
    printf("{\"workload\": \"%s\", \"ok\": true, \"raw\": %s, \"connections\": %d, "
           "\"count\": %llu, \"seconds\": %.6f, \"rate\": %.6g, \"unit\": \"%s\", "
           "\"client_cpu\": %.4f",
           G.w->name, G.raw ? "true" : "false", G.nconns, (unsigned long long)G.count, wall, rate,
           unit, wall > 0 ? self / wall : 0.0);
    if (a.server >= 0 && b.server >= 0 && wall > 0) {
        double server = b.server - a.server;
        printf(", \"server_cpu\": %.4f", server / wall);
        if (G.count) printf(", \"server_us_per_op\": %.6g", server / (double)G.count * 1e6);
        else printf(", \"server_us_per_op\": null");
        if (a.busy >= 0 && b.busy >= 0) {
            double other = (b.busy - a.busy) - self - server;
            printf(", \"other_cpu\": %.4f", (other > 0 ? other : 0) / wall);
        } else {
            printf(", \"other_cpu\": null");
        }
    } else {
        printf(", \"server_cpu\": null, \"server_us_per_op\": null, \"other_cpu\": null");
    }
    printf(", \"extension\": \"%s\", \"unclean_closes\": %llu%s}\n", G.extension,
           (unsigned long long)G.unclean, extra);
    fflush(stdout);
}

/* ---- workloads --------------------------------------------------------------------------- */

/* One round trip on a blocking socket: send, then recv until the echo is complete. */
static void rr_roundtrip(conn_t *c) {
    uint64_t target = c->received + 1;
    size_t off = 0;
    while (off < G.frame_len) {
        ssize_t n = send(c->fd, G.frame + off, G.frame_len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("send: %s", strerror(errno));
        }
        off += (size_t)n;
    }
    while (c->received < target) {
        ensure_space(c);
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) fail("no echo for %g s", G.timeout);
            fail("recv: %s", strerror(errno));
        }
        if (n == 0) fail("server closed the connection");
        consume(c, (size_t)n);
        if (c->state != S_OPEN) fail("connection closed during a round trip");
        if (c->q_count) flush_blocking(c); /* pongs */
    }
}

static void run_rr(void) {
    open_all(1);
    conn_t *c = &G.conns_v[0];
    /* one message in flight: blocking calls are the cheapest (send + recv per round trip) */
    int flags = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = (time_t)G.timeout,
                         .tv_usec = (suseconds_t)((G.timeout - (double)(time_t)G.timeout) * 1e6)};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    uint64_t warm_end = now_ns() + seconds_ns(G.warmup);
    do rr_roundtrip(c);
    while (now_ns() < warm_end);
    size_t cap = 1 << 16;
    uint64_t *lat = xmalloc(cap * sizeof *lat);
    snap_t a = snapshot();
    uint64_t end = a.wall + seconds_ns(G.duration), before = a.wall, after;
    G.count = 0;
    do {
        rr_roundtrip(c);
        after = now_ns();
        if (G.count == cap) lat = xrealloc(lat, (cap *= 2) * sizeof *lat);
        lat[G.count++] = after - before;
        before = after;
    } while (after < end && G.count < (uint64_t)G.max_count);
    snap_t b = snapshot();
    close_all();
    qsort(lat, G.count, sizeof *lat, cmp_u64);
    char extra[256];
    snprintf(extra, sizeof extra,
             ", \"size\": %zu, \"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, "
             "\"max_us\": %.2f",
             G.size, percentile(lat, G.count, 0.5) / 1e3, percentile(lat, G.count, 0.9) / 1e3,
             percentile(lat, G.count, 0.99) / 1e3, (double)lat[G.count - 1] / 1e3);
    double wall = (double)(b.wall - a.wall) / 1e9;
    emit("round trips/s", (double)G.count / wall, a, b, extra);
    free(lat);
}

static void run_stream(void) {
    open_all(G.conns);
    for (int i = 0; i < G.nconns; i++) {
        conn_t *c = &G.conns_v[i];
        for (int k = 0; k < G.inflight; k++) push(c, G.frame, G.frame_len, NULL);
        c->inflight = G.inflight;
        G.inflight_total += (uint64_t)G.inflight;
        flush(c);
        watch(c);
    }
    G.sending = 1;
    uint64_t warm_end = now_ns() + seconds_ns(G.warmup), end = 0;
    snap_t a = {0}, b = {0};
    while (G.sending || G.inflight_total) {
        pump(100, 1, "echoes");
        uint64_t now = now_ns();
        if (!G.measuring && now >= warm_end) {
            G.measuring = 1;
            G.count = 0;
            a = snapshot();
            end = a.wall + seconds_ns(G.duration);
        } else if (G.measuring && G.sending &&
                   ((now >= end && G.count) || G.count >= (uint64_t)G.max_count)) {
            /* at least one measured: a slow big16m still gives a figure */
            b = snapshot();
            G.sending = 0; /* then drain what is in flight */
        }
    }
    close_all();
    double wall = (double)(b.wall - a.wall) / 1e9, per_s = (double)G.count / wall;
    char extra[256];
    snprintf(extra, sizeof extra,
             ", \"size\": %zu, \"in_flight\": %d, \"messages_per_s\": %.6g, \"mb_per_s\": %.6g",
             G.size, G.inflight, per_s, per_s * (double)G.size / 1e6);
    if (G.size >= 65536) emit("MB/s", per_s * (double)G.size / 1e6, a, b, extra);
    else emit("messages/s", per_s, a, b, extra);
}

static void run_bcast(void) {
    open_all(G.conns);
    /* let the server file the last connections into its set before the first round */
    uint64_t settle = now_ns() + 200000000u;
    while (now_ns() < settle) pump(50, 0, "");
    size_t cap = 1024;
    uint64_t *lat = xmalloc(cap * sizeof *lat);
    snap_t a = {0}, b;
    uint64_t end = 0;
    G.count = 0;
    for (G.round = 0;; G.round++) {
        if (G.round == WARMUP_ROUNDS) {
            a = snapshot();
            end = a.wall + seconds_ns(G.duration);
            G.measuring = G.sending = 1;
        }
        conn_t *sender = &G.conns_v[G.round % (uint64_t)G.nconns];
        G.round_got = 0;
        uint64_t start = now_ns();
        G.last_progress = start;
        push(sender, G.frame, G.frame_len, NULL);
        flush(sender);
        watch(sender);
        char what[96];
        snprintf(what, sizeof what, "round %llu (%d clients)", (unsigned long long)G.round + 1,
                 G.nconns);
        while (G.round_got < (uint64_t)G.nconns) pump(100, 1, what);
        if (!G.measuring) continue;
        if (G.count == cap) lat = xrealloc(lat, (cap *= 2) * sizeof *lat);
        lat[G.count++] = G.round_done_at - start;
        if (now_ns() >= end || G.count >= (uint64_t)G.max_count) break;
    }
    b = snapshot();
    close_all();
    qsort(lat, G.count, sizeof *lat, cmp_u64);
    char extra[256];
    snprintf(extra, sizeof extra,
             ", \"size\": %zu, \"median_ms\": %.4f, \"p90_ms\": %.4f, \"max_ms\": %.4f", G.size,
             percentile(lat, G.count, 0.5) / 1e6, percentile(lat, G.count, 0.9) / 1e6,
             (double)lat[G.count - 1] / 1e6);
    emit("rounds/s", (double)G.count / ((double)(b.wall - a.wall) / 1e9), a, b, extra);
    free(lat);
}

static void run_idle(void) {
    uint64_t t0 = now_ns();
    open_all(G.conns);
    double setup = (double)(now_ns() - t0) / 1e9;
    printf("{\"ready\": true, \"workload\": \"%s\", \"connections\": %d, \"setup_seconds\": %.4f}\n",
           G.w->name, G.nconns, setup);
    fflush(stdout);
    /* hold until stdin closes (the runner has measured) or --hold seconds */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &stdin_tag};
    int watching_stdin = epoll_ctl(G.epfd, EPOLL_CTL_ADD, 0, &ev) == 0;
    snap_t a = snapshot();
    uint64_t end = a.wall + seconds_ns(G.hold);
    while (now_ns() < end && !(watching_stdin && G.stdin_closed)) pump(50, 0, "");
    snap_t b = snapshot();
    close_all();
    G.count = (uint64_t)G.nconns;
    char extra[128];
    snprintf(extra, sizeof extra, ", \"setup_seconds\": %.4f", setup);
    emit("connections/s", (double)G.nconns / setup, a, b, extra);
}

static void run_hs(void) {
    G.conns_v = calloc((size_t)G.conns, sizeof(conn_t));
    if (!G.conns_v) fail("out of memory");
    G.nconns = G.conns;
    for (int i = 0; i < G.nconns; i++) start_connect(&G.conns_v[i]);
    G.sending = 1;
    G.last_progress = now_ns();
    uint64_t warm_end = now_ns() + seconds_ns(G.warmup), end = 0;
    snap_t a = {0}, b = {0};
    for (;;) {
        pump(100, 1, "handshakes");
        uint64_t now = now_ns();
        if (!G.measuring && now >= warm_end) {
            G.measuring = 1;
            G.count = 0;
            a = snapshot();
            end = a.wall + seconds_ns(G.duration);
        } else if (G.measuring && G.sending &&
                   ((now >= end && G.count) || G.count >= (uint64_t)G.max_count)) {
            /* at least one measured: a slow big16m still gives a figure */
            b = snapshot();
            G.sending = 0;
        }
        int busy = 0;
        for (int i = 0; i < G.nconns; i++) {
            conn_t *c = &G.conns_v[i];
            /* restarted here, not in the callback: a stale event of the old fd in the same
             * epoll batch must not be taken for the new one */
            if (c->state == S_DONE && G.sending) start_connect(c);
            if (c->state != S_DONE) busy = 1;
        }
        if (!busy) break;
    }
    char extra[64];
    snprintf(extra, sizeof extra, ", \"parallel\": %d", G.nconns);
    emit("handshakes/s", (double)G.count / ((double)(b.wall - a.wall) / 1e9), a, b, extra);
}

/* ---- command line ------------------------------------------------------------------------ */

static void parse_url(const char *url) {
    const char *rest;
    if (!strncmp(url, "ws://", 5)) rest = url + 5;
    else if (!strncmp(url, "tcp://", 6)) rest = url + 6, G.raw = 1;
    else fail("URL must be ws://HOST:PORT[/PATH] or tcp://HOST:PORT, not %s", url);
    const char *slash = strchr(rest, '/');
    size_t hp = slash ? (size_t)(slash - rest) : strlen(rest);
    if (hp >= sizeof G.hostport) fail("host too long");
    memcpy(G.hostport, rest, hp);
    G.hostport[hp] = 0;
    snprintf(G.path, sizeof G.path, "%s", slash ? slash : "/");
    char host[300];
    const char *port;
    if (G.hostport[0] == '[') {
        const char *close = strchr(G.hostport, ']');
        if (!close || close[1] != ':') fail("bad host in %s", url);
        snprintf(host, sizeof host, "%.*s", (int)(close - G.hostport - 1), G.hostport + 1);
        port = close + 2;
    } else {
        const char *colon = strrchr(G.hostport, ':');
        if (!colon) fail("no port in %s", url);
        snprintf(host, sizeof host, "%.*s", (int)(colon - G.hostport), G.hostport);
        port = colon + 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r) fail("cannot resolve %s: %s", G.hostport, gai_strerror(r));
    memcpy(&G.addr, res->ai_addr, res->ai_addrlen);
    G.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "loadgen: overall time bound (--max-time) exceeded\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(3);
}

static int self_test(void) {
    char accept[32];
    uint8_t d[20];
    char hex[41];
    accept_for("dGhlIHNhbXBsZSBub25jZQ==", accept); /* RFC 6455 section 1.3 */
    sha1((const uint8_t *)"abc", 3, d);
    for (int i = 0; i < 20; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    int ok = !strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") &&
             !strcmp(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    printf("{\"self_test\": %s, \"accept\": \"%s\", \"sha1_abc\": \"%s\"}\n",
           ok ? "true" : "false", accept, hex);
    return ok ? 0 : 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --url ws://HOST:PORT[/PATH]|tcp://HOST:PORT --workload NAME\n"
            "  [--duration S=2] [--warmup S=0.2] [--count N] [--conns N] [--inflight N]\n"
            "  [--parallel N=64 (connections opening at once)] [--hold S=2 (idle)]\n"
            "  [--timeout S=10 (silence bound)] [--max-time S (overall bound)]\n"
            "  [--server-pid PID (report its CPU)] [--cpu N (pin this process)]\n"
            "  loadgen --self-test | --list\nworkloads:");
    for (size_t i = 0; i < sizeof WORKLOADS / sizeof *WORKLOADS; i++)
        fprintf(stderr, " %s", WORKLOADS[i].name);
    fputc('\n', stderr);
    exit(2);
}

int main(int argc, char **argv) {
    const char *name = NULL;
    G.duration = 2, G.warmup = 0.2, G.timeout = 10, G.hold = 2, G.parallel = 64;
    G.max_count = -1, G.conns = -1, G.inflight = -1, G.cpu = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--self-test")) return self_test();
        if (!strcmp(a, "--list")) {
            for (size_t k = 0; k < sizeof WORKLOADS / sizeof *WORKLOADS; k++)
                printf("%s\n", WORKLOADS[k].name);
            return 0;
        }
        if (!v) usage();
        i++;
        if (!strcmp(a, "--url")) G.url = v;
        else if (!strcmp(a, "--workload")) name = v;
        else if (!strcmp(a, "--duration")) G.duration = atof(v);
        else if (!strcmp(a, "--warmup")) G.warmup = atof(v);
        else if (!strcmp(a, "--timeout")) G.timeout = atof(v);
        else if (!strcmp(a, "--hold")) G.hold = atof(v);
        else if (!strcmp(a, "--max-time")) G.max_time = atof(v);
        else if (!strcmp(a, "--count")) G.max_count = atoll(v);
        else if (!strcmp(a, "--conns")) G.conns = atoi(v);
        else if (!strcmp(a, "--inflight")) G.inflight = atoi(v);
        else if (!strcmp(a, "--parallel")) G.parallel = atoi(v);
        else if (!strcmp(a, "--server-pid")) G.server_pid = atoi(v);
        else if (!strcmp(a, "--cpu")) G.cpu = atoi(v);
        else usage();
    }
    if (!G.url || !name) usage();
    for (size_t k = 0; k < sizeof WORKLOADS / sizeof *WORKLOADS; k++)
        if (!strcmp(WORKLOADS[k].name, name)) G.w = &WORKLOADS[k];
    if (!G.w) {
        fprintf(stderr, "loadgen: unknown workload %s\n", name);
        usage();
    }
    if (G.duration <= 0 || G.warmup < 0 || G.timeout <= 0 || G.hold < 0 || G.parallel < 1)
        fail("--duration, --timeout and --parallel must be positive, --warmup and --hold not "
             "negative");
    if (G.conns < 0) G.conns = G.w->conns;
    if (G.inflight < 0) G.inflight = G.w->inflight;
    if (G.max_count < 0) G.max_count = 100000000;
    if (G.conns < 1 || G.inflight < 0 || G.max_count < 1) fail("bad --conns/--inflight/--count");
    if (G.max_time <= 0)
        G.max_time = G.warmup + G.duration + G.hold + 4 * G.timeout + 30 + G.conns / 500.0;

    uint64_t seed;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = now_ns() ^ (uint64_t)getpid();
    rng_state = seed | 1;
    parse_url(G.url);
    if (G.raw && (G.w->deflate || G.w->kind == K_BCAST))
        fail("raw TCP servers have no %s", G.w->deflate ? "compression" : "broadcast");

    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)G.max_time + 1);
    /* idle5000 and bcast10k need more descriptors than the usual soft limit */
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (G.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(G.cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set)) fail("cannot pin to CPU %d", G.cpu);
    }
    G.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (G.epfd < 0) fail("epoll_create1: %s", strerror(errno));

    G.size = G.w->size;
    G.opcode = G.w->opcode;
    make_payload();
    make_frame(0); /* compressed variants rebuild it once the server's window is known */
    G.scratch_cap = G.size + 1; /* one more: an inflated message too long is caught */
    G.scratch = xmalloc(G.scratch_cap);
    static const uint8_t code[2] = {0x03, 0xE8}; /* 1000, normal closure */
    build_frame(G.close_frame, 0x80 | OP_CLOSE, code, 2);

    switch (G.w->kind) {
    case K_RR: run_rr(); break;
    case K_STREAM: run_stream(); break;
    case K_IDLE: run_idle(); break;
    case K_HS: run_hs(); break;
    case K_BCAST: run_bcast(); break;
    }
    return 0;
}
