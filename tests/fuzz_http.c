/*
 * Fuzz target for the whole request path: raw bytes (request line,
 * headers, body, gzip, several requests on one connection) go over a real
 * socket into the same evhttp, limits (daemon/connections.c) and routes
 * (daemon/http.c) the daemon serves, through authentication, gunzip and
 * ingest_parse, up to the journal record and the ledger rows it produces.
 *
 * The harness is the daemon's server.c in miniature: it provides what
 * http.c calls (server.h), and its server_accept, instead of journaling,
 * decodes the record independently and checks what the daemon promises of
 * every accepted sample: its cluster and meter are valid UTF-8 (RFC 3629:
 * no overlong forms, no surrogates, at most U+10FFFF), hold no NUL, are 1
 * to 256 bytes, the cluster exists and all of a record's clusters belong
 * to one tenant, the value is finite and >= 0; and, once the record is
 * applied to the engine (ingest_apply, as the daemon does), no tenant has
 * more meters than its max_meters. Every row the engine then closes is
 * turned into the ledger's text parameters (storage/ledger_rows.c), as the
 * daemon hands them to PostgreSQL, and each must be valid UTF-8 with the
 * column count of its table.
 *
 * Each input is one connection: the client writes the bytes (what does not
 * fit waits for EV_WRITE), shuts its write side once the daemon is idle,
 * and reads until the daemon closes the connection. A connection on which
 * nothing moves for 2 s while the loop is idle is a hang, and aborts.
 * Afterwards no connection may still be counted open.
 *
 * Switches an input can carry (anywhere in its bytes, so the corpus stays
 * plain HTTP): "X-Fuzz-Refuse" makes server_refuses_writes refuse (503),
 * "X-Fuzz-Degraded" makes server_degraded answer (with invalid UTF-8 in
 * the reason, which /health must escape), and a request with the header
 * "X-Fuzz-Defer" is answered from a later loop iteration (as the daemon
 * answers once the record is durable) rather than at once.
 *
 * libFuzzer:  tests/fuzz_run.sh builds it with clang -fsanitize=fuzzer
 *             (see there for the sources it links).
 * Regression: built with -DFUZZ_STANDALONE, main runs the target once on
 *             every file or directory named (meson test: tests/corpus/http).
 */
#include "daemon/connections.h"
#include "daemon/http.h"
#include "daemon/ingest.h"
#include "daemon/lineproto.h"
#include "daemon/metrics.h"
#include "daemon/server.h"
#include "storage/ledger_rows.h"
#include "tests/fuzz_common.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include <errno.h>
#include <linux/sockios.h>
#include <math.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define TAG_MAX_BYTES 256
#define HANG_SECONDS  2
#define HANG_TICK_MS  250

/* What the daemon's struct server holds that http.c reaches. */
struct server {
    struct config *cfg;
    struct engine *engine;
    struct lp_cache *ingest_cache;
    struct metrics metrics;
    struct conns *conns;
    const char *refusal, *degraded, *failed;
    struct ledger_rows rows;
    struct evhttp_request **deferred;
    size_t n_deferred, cap_deferred;
    struct event *answer;
};

static struct server srv;
static struct event_base *base;
static struct evhttp *http;
static struct sockaddr_un addr;
static socklen_t addr_len;
/* FUZZ_HTTP_VERBOSE=1: the answers go to stderr (to check a seed). */
static bool verbose;

/* ------------------------------------------------------------------ */
/* server.h, as server.c has it but without a journal                 */

const struct config *server_config(const struct server *s)
{
    return s->cfg;
}

const struct engine *server_engine(const struct server *s)
{
    return s->engine;
}

struct lp_cache *server_ingest_cache(struct server *s)
{
    return s->ingest_cache;
}

const char *server_refuses_writes(const struct server *s, int64_t now_ns)
{
    (void)now_ns;
    return s->refusal;
}

const char *server_degraded(struct server *s)
{
    return s->degraded;
}

const char *server_shed_write(struct server *s)
{
    (void)s;
    return NULL;
}

void server_write_work(struct server *s, const struct timespec *started)
{
    (void)s;
    (void)started;
}

const char *server_failed(struct server *s)
{
    return s->failed;
}

struct metrics *server_metrics(struct server *s)
{
    return &s->metrics;
}

void server_gauges(const struct server *s, struct metrics_gauges *g)
{
    struct engine_stats st;
    engine_stats(s->engine, &st);
    *g = (struct metrics_gauges){
        .samples_accepted = st.accepted,
        .duplicates = st.duplicates,
        .conflicts = st.conflicts,
        .quarantined = st.quarantined,
        .intervals_closed = st.billing_rows,
        .adjustments = st.adjustment_rows,
        .demand_rows = st.demand_rows,
        .meters = st.meters,
        .samples_kept = st.samples_kept,
        .max_backlog_bytes = s->cfg->daemon.max_backlog_bytes,
        .postgres_up = s->degraded == NULL,
        .connections = conns_open(s->conns),
        .max_connections = (size_t)s->cfg->daemon.max_connections,
    };
}

/* A text the ledger or a client will see: UTF-8 (when the parser checks
 * it), no NUL within its n bytes. */
static void check_text(const char *s, size_t n)
{
    check(memchr(s, '\0', n) == NULL);
    check(fuzz_utf8_valid((const unsigned char *)s, n));
}

/* Decodes a RECORD_SAMPLES payload without ingest.c's reader (the format
 * of ingest.h) and checks every sample. */
static void check_record(const struct config *cfg, const unsigned char *p, size_t len)
{
    const unsigned char *end = p + len;
    check(len >= 12);
    int64_t now_ns;
    uint32_t n;
    memcpy(&now_ns, p, 8);
    memcpy(&n, p + 8, 4);
    p += 12;
    check(n > 0);
    const struct tenant *tenant = NULL;
    for (uint32_t i = 0; i < n; i++) {
        char name[2][TAG_MAX_BYTES + 1];
        for (int k = 0; k < 2; k++) {
            uint16_t l;
            check(end - p >= 2);
            memcpy(&l, p, 2);
            p += 2;
            check(l >= 1 && l <= TAG_MAX_BYTES && end - p >= l);
            check_text((const char *)p, l);
            memcpy(name[k], p, l);
            name[k][l] = '\0';
            p += l;
        }
        check(end - p >= 17);
        uint8_t kind = p[0];
        int64_t ts_ns;
        double value;
        memcpy(&ts_ns, p + 1, 8);
        memcpy(&value, p + 9, 8);
        p += 17;
        check(kind == SAMPLE_POWER || kind == SAMPLE_COUNTER);
        check(isfinite(value) && value >= 0);
        const struct cluster *c = config_find_cluster(cfg, name[0]);
        check(c != NULL);
        check(tenant == NULL || c->tenant == tenant);
        tenant = c->tenant;
    }
    check(p == end);
}

/* Every tenant within its max_meters. */
static void check_meters(const struct server *s)
{
    for (size_t i = 0; i < s->cfg->n_tenants; i++) {
        const struct tenant *t = &s->cfg->tenants[i];
        check((int64_t)engine_tenant_meters(s->engine, t) <= tenant_max_meters(s->cfg, t));
    }
}

/* The rows as the ledger writer would bind them. */
static void check_rows(struct server *s)
{
    size_t off = 0;
    struct ledger_row row;
    while (ledger_next(&s->rows, &off, &row)) {
        static const int columns[] = {[LEDGER_BILLING] = 24,
                                      [LEDGER_DEMAND] = 19,
                                      [LEDGER_QUARANTINE] = 6,
                                      [LEDGER_RELEASE] = 2};
        check(row.kind <= LEDGER_RELEASE && row.n == columns[row.kind]);
        for (int i = 0; i < row.n; i++)
            if (row.values[i])
                check_text(row.values[i], strlen(row.values[i]));
    }
    ledger_rows_free(&s->rows);
}

static void answer(struct evhttp_request *req)
{
    bool v2 = strncmp(evhttp_request_get_uri(req), "/api/", 5) == 0;
    metrics_request(&srv.metrics, v2 ? ENDPOINT_WRITE_V2 : ENDPOINT_WRITE_V1, 204);
    evhttp_send_reply(req, 204, "No Content", NULL);
}

static void on_answer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    for (size_t i = 0; i < s->n_deferred; i++)
        answer(s->deferred[i]);
    s->n_deferred = 0;
}

void server_accept(struct server *s, struct evhttp_request *req, bool v2, struct record_buf *record,
                   const struct ingest_meters *meters)
{
    (void)v2;
    check(s->refusal == NULL);
    check_record(s->cfg, record->p, record->len);
    struct error err;
    if (!ingest_apply_meters(s->engine, record->p, record->len, meters, &err)) {
        fprintf(stderr, "engine refused a validated request: %s\n", err.msg);
        abort();
    }
    check_meters(s);
    /* A tick at the record's clock, as the daemon's next one: rows close. */
    int64_t now_ns;
    memcpy(&now_ns, record->p, sizeof now_ns);
    struct record_buf tick = {0};
    ingest_encode_tick(now_ns, &tick);
    check(ingest_apply_tick(s->engine, tick.p, tick.len, &err));
    record_buf_free(&tick);
    check_rows(s);
    if (!evhttp_find_header(evhttp_request_get_input_headers(req), "X-Fuzz-Defer")) {
        answer(req);
        return;
    }
    if (s->n_deferred == s->cap_deferred) {
        s->cap_deferred = s->cap_deferred ? s->cap_deferred * 2 : 8;
        s->deferred = realloc(s->deferred, s->cap_deferred * sizeof *s->deferred);
        if (!s->deferred)
            abort();
    }
    s->deferred[s->n_deferred++] = req;
    event_active(s->answer, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Rows                                                                */

static void on_billing(void *ctx, const struct billing_row *row)
{
    struct server *s = ctx;
    check(row->cluster && config_find_cluster(s->cfg, row->cluster->id) == row->cluster);
    check(row->interval_end_s - row->interval_start_s == s->cfg->daemon.interval_s);
    check(row->period < PERIOD_COUNT && row->revision >= 0);
    check(row->revision > 0 || (row->kwh_micro >= 0 && row->missing_s >= 0));
    int64_t net;
    check(!__builtin_add_overflow(row->energy_charge_cny4, row->surcharge_cny4, &net));
    check(!__builtin_sub_overflow(net, row->subsidy_cny4, &net) && net == row->net_cny4);
    check(row->tariff_version != NULL);
    ledger_add_billing(&s->rows, row);
}

static void on_demand(void *ctx, const struct demand_row *row)
{
    struct server *s = ctx;
    check(row->cluster && config_find_cluster(s->cfg, row->cluster->id) == row->cluster);
    check(row->revision >= 0 && row->tariff_version != NULL);
    ledger_add_demand(&s->rows, row);
}

static void on_quarantine(void *ctx, const struct engine_sample *smp, const char *reason)
{
    struct server *s = ctx;
    check(reason && reason[0]);
    ledger_add_quarantine(&s->rows, smp, reason, 1740758400000000000);
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */

static void fuzz_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    verbose = getenv("FUZZ_HTTP_VERBOSE") != NULL;
    struct errors errs = {0};
    srv.cfg = config_from_string("fuzz.conf", fuzz_config_text, &errs);
    if (!srv.cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        abort();
    }
    errors_free(&errs);

    base = event_base_new();
    http = evhttp_new(base);
    evhttp_set_max_body_size(http, (ev_ssize_t)srv.cfg->daemon.max_body_bytes);
    srv.conns = conns_new(base, srv.cfg->daemon.max_connections, srv.cfg->daemon.idle_timeout_s);
    srv.answer = event_new(base, -1, 0, on_answer, &srv);
    conns_attach(srv.conns, http, NULL, true);
    http_install(&srv, http, HTTP_TENANTS);

    /* A socket in the abstract namespace: nothing to clean up. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    check(fd >= 0);
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "tariffd-fuzz-http-%d",
                     (int)getpid());
    addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    check(bind(fd, (struct sockaddr *)&addr, addr_len) == 0);
    check(listen(fd, 16) == 0);
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(http, fd);
    check(bound != NULL);
    conns_add_listener(srv.conns, bound);
}

struct client {
    int fd;
    const uint8_t *data;
    size_t size, off;
    size_t received;
    bool shut, eof;
    struct event *wr, *rd, *hang;
    struct timespec last; /* the watchdog's */
    size_t last_off, last_received;
    int64_t stuck_ms;
};

static void client_write(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct client *c = arg;
    while (c->off < c->size) {
        ssize_t n = send(fd, c->data + c->off, c->size - c->off, MSG_NOSIGNAL);
        if (n > 0) {
            c->off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            event_add(c->wr, NULL);
            return;
        }
        if (n < 0 && errno == EINTR)
            continue;
        /* The daemon closed the connection: the rest is not read. */
        c->off = c->size;
        c->shut = true;
        shutdown(fd, SHUT_WR);
    }
}

static void client_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct client *c = arg;
    char buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            c->received += (size_t)n;
            if (verbose)
                fwrite(buf, 1, (size_t)n, stderr);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        c->eof = true; /* EOF, or reset */
        event_base_loopbreak(base);
        return;
    }
}

/* The watchdog: every 250 ms, while the loop is idle (the timer fires on
 * time) and no byte has moved either way, the connection counts as stuck;
 * stuck for HANG_SECONDS is a hang. A late timer means the loop was busy
 * (a slow request is not a hang; libFuzzer's -timeout judges those). */
static void client_hang(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct client *c = arg;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (now.tv_sec - c->last.tv_sec) * 1000 + (now.tv_nsec - c->last.tv_nsec) / 1000000;
    bool moved = c->off != c->last_off || c->received != c->last_received;
    c->stuck_ms = ms > 2 * HANG_TICK_MS || moved ? 0 : c->stuck_ms + ms;
    c->last = now;
    c->last_off = c->off;
    c->last_received = c->received;
    if (c->stuck_ms >= HANG_SECONDS * 1000) {
        fprintf(stderr, "fuzz_http: the connection is stuck for %d s (%zu of %zu bytes sent)\n",
                HANG_SECONDS, c->off, c->size);
        abort();
    }
}

/* Bytes sent that the daemon has not read from the socket yet. */
static int unread(int fd)
{
    int n = 0;
    check(ioctl(fd, SIOCOUTQ, &n) == 0);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base)
        fuzz_init();
    struct engine_sink sink = {&srv, on_billing, on_demand, on_quarantine, NULL};
    srv.engine = engine_new(srv.cfg, &sink);
    srv.ingest_cache = lp_cache_new(SIZE_MAX);
    memset(&srv.metrics, 0, sizeof srv.metrics);
    srv.refusal = memmem(data, size, "X-Fuzz-Refuse", 13)
                      ? "journal backlog over max_backlog; retry later"
                      : NULL;
    srv.degraded = memmem(data, size, "X-Fuzz-Degraded", 15)
                       ? "PostgreSQL unreachable, rows wait in the journal: \xff\xfe \"quoted\"\n"
                       : NULL;
    srv.failed = memmem(data, size, "X-Fuzz-Failed", 13)
                     ? "1 row refused by PostgreSQL (SQLSTATE 23514: \"x\"); see dead_letters"
                     : NULL;

    struct client c = {.data = data, .size = size};
    c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    check(c.fd >= 0);
    check(connect(c.fd, (struct sockaddr *)&addr, addr_len) == 0);
    c.wr = event_new(base, c.fd, EV_WRITE, client_write, &c);
    c.rd = event_new(base, c.fd, EV_READ | EV_PERSIST, client_read, &c);
    c.hang = event_new(base, -1, EV_PERSIST, client_hang, &c);
    struct timeval hang = {0, HANG_TICK_MS * 1000};
    clock_gettime(CLOCK_MONOTONIC, &c.last);
    event_add(c.rd, NULL);
    event_add(c.hang, &hang);
    client_write(c.fd, EV_WRITE, &c);
    /* Pipelined requests: libevent 2.1 drops a connection at EOF even
     * with whole requests still buffered, so the client shuts its write
     * side only once the daemon is idle: everything sent has been read,
     * no answer is pending, and two turns of the loop ran with nothing
     * active and nothing received. */
    int quiet = 0;
    while (!c.eof && !c.shut) {
        size_t received = c.received;
        event_base_loop(base, EVLOOP_NONBLOCK);
        bool idle = c.off == c.size && srv.n_deferred == 0 && c.received == received &&
                    event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) == 0 &&
                    unread(c.fd) == 0;
        quiet = idle ? quiet + 1 : 0;
        if (quiet == 2) {
            shutdown(c.fd, SHUT_WR);
            c.shut = true;
        }
    }
    while (!c.eof)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(c.wr);
    event_free(c.rd);
    event_free(c.hang);
    close(c.fd);

    /* The daemon closed its side: its connection is gone and counted out
     * (a few more turns of the loop for callbacks already queued). */
    for (int i = 0; i < 4; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    check(conns_open(srv.conns) == 0);
    /* Requests whose client went away are still answered (and freed). */
    on_answer(-1, 0, &srv);
    check_rows(&srv);
    engine_free(srv.engine);
    srv.engine = NULL;
    lp_cache_free(srv.ingest_cache);
    srv.ingest_cache = NULL;
    return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv)
{
    int n = fuzz_run_paths(argc - 1, argv + 1);
    printf("%d passed, 0 failed\n", n);
    return 0;
}
#endif
