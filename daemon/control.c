#include "daemon/control.h"

#include "daemon/correction.h"
#include "daemon/history.h"
#include "daemon/log.h"
#include "daemon/server.h"
#include "tariff/alloc.h"
#include "tariff/civil.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <sys/queue.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A piece of a backfill: the command line sends BACKFILL_PIECE_BYTES
 * (daemon/control_client.h), a line longer than that goes whole. */
#define CONTROL_MAX_BODY    (64u << 20)
#define CONTROL_MAX_HEADERS (64 * 1024) /* as the tenants' listeners */
#define CONTROL_TIMEOUT_S   600         /* an answer may wait for the ledger and for PostgreSQL */

struct control {
    struct server *s;
    struct evhttp *http;
    char path[sizeof(struct sockaddr_un)];
};

bool control_socket_path(const char *state_dir, char *buf, size_t size, struct error *err)
{
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    int n = snprintf(buf, size, "%s/" CONTROL_SOCKET_NAME, state_dir);
    if (n < 0 || (size_t)n > max || (size_t)n >= size) {
        error_set(err,
                  "state_dir \"%.150s\" is too long for the control socket: its path would be %d "
                  "bytes, a socket address holds %zu",
                  state_dir, n, max);
        return false;
    }
    return true;
}

static void reply(struct evhttp_request *req, int status, const char *text)
{
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {{200, "OK"},
                   {400, "Bad Request"},
                   {404, "Not Found"},
                   {405, "Method Not Allowed"},
                   {409, "Conflict"},
                   {413, "Payload Too Large"},
                   {500, "Internal Server Error"},
                   {503, "Service Unavailable"}};
    const char *reason = "Error";
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].status == status)
            reason = reasons[i].reason;
    struct evbuffer *body = evbuffer_new();
    size_t len = strlen(text);
    evbuffer_add(body, text, len);
    if (!len || text[len - 1] != '\n')
        evbuffer_add(body, "\n", 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, status, reason, body);
    evbuffer_free(body);
}

static void answer(void *arg, int status, const char *text)
{
    reply(arg, status, text);
}

static void set_text(struct history_answer *out, int status, const char *text)
{
    out->status = status;
    snprintf(out->text, sizeof out->text, "%s", text);
}

static int by_id(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The arguments of POST /reprice; false with the reason (a 400). */
static bool parse_args(const struct config *cfg, const char *query, struct correction_args *a,
                       char *why, size_t size)
{
    memset(a, 0, sizeof *a);
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (evhttp_parse_query_str(query ? query : "", &params) != 0) {
        snprintf(why, size, "the query string is malformed");
        return false;
    }
    const char *from = NULL, *to = NULL, *dry = NULL;
    bool ok = true;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, &params, next)
    {
        const char **one = strcmp(kv->key, "from") == 0      ? &from
                           : strcmp(kv->key, "to") == 0      ? &to
                           : strcmp(kv->key, "dry_run") == 0 ? &dry
                                                             : NULL;
        if (one && *one) {
            snprintf(why, size, "parameter \"%s\" is given twice", kv->key);
            ok = false;
            break;
        }
        if (one) {
            *one = kv->value;
            continue;
        }
        if (strcmp(kv->key, "cluster") != 0) {
            snprintf(why, size,
                     "unknown parameter \"%.100s\" (expected from, to, cluster and dry_run)",
                     kv->key);
            ok = false;
            break;
        }
        const struct cluster *c = config_find_cluster(cfg, kv->value);
        if (!c) {
            snprintf(why, size, "cluster \"%.200s\" is not in the config", kv->value);
            ok = false;
            break;
        }
        a->clusters = xrealloc(a->clusters, (a->n_clusters + 1) * sizeof *a->clusters);
        a->clusters[a->n_clusters++] = xstrdup(c->id);
    }
    const char *bad;
    if (ok && (!from || !to)) {
        snprintf(why, size, "from and to are required (from=YYYY-MM-DD&to=YYYY-MM-DD)");
        ok = false;
    } else if (ok && !civil_parse_date(from, &a->from_day, &bad)) {
        snprintf(why, size, "from \"%.40s\" %s", from, bad);
        ok = false;
    } else if (ok && !civil_parse_date(to, &a->to_day, &bad)) {
        snprintf(why, size, "to \"%.40s\" %s", to, bad);
        ok = false;
    } else if (ok && a->from_day >= a->to_day) {
        snprintf(why, size, "from %s is not before to %s: the range [from, to) is empty", from, to);
        ok = false;
    } else if (ok && dry && strcmp(dry, "1") != 0 && strcmp(dry, "0") != 0) {
        snprintf(why, size, "dry_run \"%.40s\" must be 1 or 0", dry);
        ok = false;
    }
    a->dry_run = dry && strcmp(dry, "1") == 0;
    evhttp_clear_headers(&params);
    if (!ok) {
        correction_args_free(a);
        return false;
    }
    if (a->n_clusters == 0) {
        a->all_clusters = true;
        a->clusters = xcalloc(cfg->n_clusters, sizeof *a->clusters);
        for (size_t i = 0; i < cfg->n_clusters; i++)
            a->clusters[a->n_clusters++] = xstrdup(cfg->clusters[i].id);
    }
    qsort(a->clusters, a->n_clusters, sizeof *a->clusters, by_id);
    size_t kept = 0; /* a cluster named twice is asked once */
    for (size_t i = 0; i < a->n_clusters; i++) {
        if (kept && strcmp(a->clusters[kept - 1], a->clusters[i]) == 0)
            free(a->clusters[i]);
        else
            a->clusters[kept++] = a->clusters[i];
    }
    a->n_clusters = kept;
    return true;
}

/* The query's parameters, each allowed one at most; false with why (a
 * 400) for another or a repeated one. */
static bool query_params(const char *query, const char *const *names, const char **values, size_t n,
                         struct evkeyvalq *params, char *why, size_t size)
{
    TAILQ_INIT(params);
    if (evhttp_parse_query_str(query ? query : "", params) != 0) {
        snprintf(why, size, "the query string is malformed");
        return false;
    }
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, params, next)
    {
        size_t i = 0;
        while (i < n && strcmp(kv->key, names[i]) != 0)
            i++;
        if (i == n) {
            snprintf(why, size, "unknown parameter \"%.100s\"", kv->key);
            return false;
        }
        if (values[i]) {
            snprintf(why, size, "parameter \"%s\" is given twice", kv->key);
            return false;
        }
        values[i] = kv->value;
    }
    return true;
}

static bool flag(const char *v, bool *out, const char *what, char *why, size_t size)
{
    *out = v && strcmp(v, "1") == 0;
    if (v && strcmp(v, "1") != 0 && strcmp(v, "0") != 0) {
        snprintf(why, size, "%s \"%.40s\" must be 1 or 0", what, v);
        return false;
    }
    return true;
}

/* POST /backfill, /backfill/lines, /backfill/commit, /backfill/abort
 * (daemon/history.h). */
static void on_backfill(struct control *c, struct evhttp_request *req, const char *path,
                        const char *query)
{
    static const char *const names[] = {"precision", "dry_run", "session"};
    const char *v[3] = {0};
    struct evkeyvalq params;
    char why[512];
    struct history_answer out = {400, ""};
    bool begin = strcmp(path, "/backfill") == 0;
    if (!query_params(query, names, v, 3, &params, why, sizeof why)) {
        reply(req, 400, why);
        evhttp_clear_headers(&params);
        return;
    }
    uint64_t id = 0;
    char *end = NULL;
    if (begin) {
        enum lp_precision precision = LP_PRECISION_NS;
        bool dry_run = false;
        if (v[2])
            set_text(&out, 400, "a session begins without one: no session parameter");
        else if (v[0] && !lp_parse_precision(v[0], false, &precision))
            set_text(&out, 400, "unknown precision (expected ns, us, ms or s)");
        else if (flag(v[1], &dry_run, "dry_run", out.text, sizeof out.text))
            history_begin(c->s, precision, dry_run, &out);
    } else if (v[0] || v[1]) {
        set_text(&out, 400, "precision and dry_run go with POST /backfill, which begins");
    } else if (!v[2] || (id = strtoull(v[2], &end, 10), !*v[2] || *end)) {
        set_text(&out, 400, "session=ID is required (the number POST /backfill answered)");
    } else if (strcmp(path, "/backfill/lines") == 0) {
        struct evbuffer *body = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(body);
        const char *p = len ? (const char *)evbuffer_pullup(body, -1) : "";
        history_lines(c->s, id, p, len, &out);
    } else if (strcmp(path, "/backfill/abort") == 0) {
        history_abort(c->s, id, &out);
    } else if (history_commit(c->s, id, answer, req, &out)) {
        evhttp_clear_headers(&params);
        return; /* answered later */
    }
    evhttp_clear_headers(&params);
    reply(req, out.status, out.text);
}

/* UTC midnight of a day as nanoseconds, the years past 2262 as the end of
 * time (a date up to 9999 is valid; nanoseconds end in 2262). */
static int64_t day_start_ns(int32_t day)
{
    const int64_t ns_per_day = 86400LL * 1000000000LL;
    if (day >= INT64_MAX / ns_per_day)
        return INT64_MAX;
    if (day <= INT64_MIN / ns_per_day)
        return INT64_MIN;
    return (int64_t)day * ns_per_day;
}

/* POST /requeue[?reason=TEXT][&from=DATE&to=DATE][&dry_run=1]: dates in
 * UTC (a quarantined sample may have no cluster to take an offset from). */
static void on_requeue(struct control *c, struct evhttp_request *req, const char *query)
{
    static const char *const names[] = {"reason", "from", "to", "dry_run"};
    const char *v[4] = {0};
    struct evkeyvalq params;
    char why[512];
    if (!query_params(query, names, v, 4, &params, why, sizeof why)) {
        reply(req, 400, why);
        evhttp_clear_headers(&params);
        return;
    }
    struct requeue_args args = {.from_ns = INT64_MIN, .to_ns = INT64_MAX};
    int32_t from_day = 0, to_day = 0;
    const char *bad;
    bool ok = false;
    if (!v[1] != !v[2])
        snprintf(why, sizeof why, "from and to go together (from=YYYY-MM-DD&to=YYYY-MM-DD)");
    else if (v[1] && !civil_parse_date(v[1], &from_day, &bad))
        snprintf(why, sizeof why, "from \"%.40s\" %s", v[1], bad);
    else if (v[2] && !civil_parse_date(v[2], &to_day, &bad))
        snprintf(why, sizeof why, "to \"%.40s\" %s", v[2], bad);
    else if (v[1] && from_day >= to_day)
        snprintf(why, sizeof why, "from %s is not before to %s: the range [from, to) is empty",
                 v[1], v[2]);
    else if (v[0] && !*v[0])
        snprintf(why, sizeof why, "reason is empty (leave it out for every reason)");
    else
        ok = flag(v[3], &args.dry_run, "dry_run", why, sizeof why);
    if (!ok) {
        evhttp_clear_headers(&params);
        reply(req, 400, why);
        return;
    }
    if (v[1]) {
        args.from_ns = day_start_ns(from_day);
        args.to_ns = day_start_ns(to_day);
    }
    args.reason = v[0] ? xstrdup(v[0]) : NULL;
    evhttp_clear_headers(&params);
    struct history_answer out;
    if (!history_requeue(c->s, &args, answer, req, &out))
        reply(req, out.status, out.text);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct control *c = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = evhttp_uri_get_path(uri);
    char why[512];
    static const char *const paths[] = {"/reprice",        "/requeue",         "/backfill",
                                        "/backfill/lines", "/backfill/commit", "/backfill/abort"};
    size_t which = 0;
    while (path && which < sizeof paths / sizeof paths[0] && strcmp(path, paths[which]) != 0)
        which++;
    if (!path || which == sizeof paths / sizeof paths[0]) {
        snprintf(why, sizeof why,
                 "no such endpoint: %.100s (the control socket serves POST /reprice, /requeue "
                 "and /backfill)",
                 path && *path ? path : "/");
        reply(req, 404, why);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        snprintf(why, sizeof why, "method not allowed on %s (allowed: POST)", path);
        reply(req, 405, why);
        return;
    }
    if (which == 1) {
        on_requeue(c, req, evhttp_uri_get_query(uri));
        return;
    }
    if (which >= 2) {
        on_backfill(c, req, path, evhttp_uri_get_query(uri));
        return;
    }
    struct correction_args args;
    if (!parse_args(server_config(c->s), evhttp_uri_get_query(uri), &args, why, sizeof why)) {
        reply(req, 400, why);
        return;
    }
    int status;
    if (!correction_start(c->s, &args, answer, req, &status, why, sizeof why))
        reply(req, status, why);
}

struct control *control_open(struct server *s, struct event_base *base, const char *state_dir,
                             struct error *err)
{
    struct control *c = xcalloc(1, sizeof *c);
    c->s = s;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!control_socket_path(state_dir, c->path, sizeof c->path, err)) {
        free(c);
        return NULL;
    }
    memcpy(addr.sun_path, c->path, strlen(c->path) + 1); /* control_socket_path: it fits */
    /* One left by a crash: nothing listens on it any more (two daemons on
     * one state_dir would already fight over its journal). */
    struct stat st;
    if (lstat(c->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            error_set(err, "%s exists and is not a socket; remove it", c->path);
            free(c);
            return NULL;
        }
        unlink(c->path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_set(err, "control socket: %s", strerror(errno));
        free(c);
        return NULL;
    }
    /* Mode 0600 from the start, never wider for an instant (a socket is
     * created 0777 less the umask). */
    mode_t old = umask(0177);
    int bound = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    int saved = errno;
    umask(old);
    if (bound != 0 || listen(fd, 16) != 0) {
        error_set(err, "could not listen on %s: %s", c->path, strerror(bound ? saved : errno));
        close(fd);
        if (bound == 0)
            unlink(c->path);
        free(c);
        return NULL;
    }
    struct evconnlistener *listener =
        evconnlistener_new(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    c->http = evhttp_new(base);
    if (!listener || !c->http || !evhttp_bind_listener(c->http, listener)) {
        error_set(err, "could not serve %s", c->path);
        if (c->http)
            evhttp_free(c->http);
        if (listener)
            evconnlistener_free(listener);
        else
            close(fd);
        unlink(c->path);
        free(c);
        return NULL;
    }
    evhttp_set_allowed_methods(c->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_max_body_size(c->http, CONTROL_MAX_BODY);
    evhttp_set_max_headers_size(c->http, CONTROL_MAX_HEADERS);
    evhttp_set_timeout(c->http, CONTROL_TIMEOUT_S);
    evhttp_set_gencb(c->http, on_request, c);
    log_msg(LOG_INFO, "control socket %s", c->path);
    return c;
}

void control_close(struct control *c)
{
    if (!c)
        return;
    evhttp_free(c->http); /* the listener with it */
    unlink(c->path);
    free(c);
}
