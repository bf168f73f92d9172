/*
 * http: the InfluxDB-compatible endpoints (docs/design.md section 3).
 *
 *   POST /write?db=&precision=n|u|ms|s|m|h&u=&p=    v1 write
 *   POST /api/v2/write?org=&bucket=&precision=ns|us|ms|s   v2 write
 *   GET|HEAD /ping   204 with X-Influxdb-Version
 *   GET /health      200 {"status":"pass",...}
 *   GET|POST /query  200 {"results":[{"statement_id":0}]} (Telegraf's CREATE DATABASE)
 *
 * A write is authenticated (Token, Bearer, Basic password, or v1 p=),
 * decompressed (gzip, bounded by max_body after decompression too),
 * validated whole by ingest_parse, and only then accepted. Every error is
 * JSON in the endpoint's own shape. Runs on the loop thread only.
 */
#include "daemon/http.h"

#include "daemon/server.h"

#include "build_config.h"
#include "daemon/clock.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "tariff/alloc.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/queue.h>
#include <zlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Appends s to out as the inside of a JSON string: escapes quotes,
 * backslashes and control characters, and replaces bytes that are not
 * UTF-8 with U+FFFD so the answer is always valid JSON. */
static void json_string(struct evbuffer *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            evbuffer_add_printf(out, "\\%c", c);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            evbuffer_add_printf(out, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            evbuffer_add(out, p++, 1);
        } else {
            int n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
            bool ok = n > 0;
            for (int i = 1; i < n && ok; i++)
                ok = (p[i] & 0xc0) == 0x80;
            if (ok) {
                evbuffer_add(out, p, (size_t)n);
                p += n;
            } else {
                evbuffer_add(out, "\\ufffd", 6);
                p++;
            }
        }
    }
}

static void reply_json(struct evhttp_request *req, int status, const char *reason,
                       struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, reason, body);
    evbuffer_free(body);
}

static const char *reason_of(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Request Entity Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

static const char *v2_code(int status)
{
    switch (status) {
    case 400:
        return "invalid";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not found";
    case 405:
        return "method not allowed";
    case 413:
        return "request too large";
    case 503:
        return "unavailable";
    default:
        return "internal error";
    }
}

void http_error(struct evhttp_request *req, bool v2, int status, const char *msg, int retry_after_s)
{
    struct evbuffer *body = evbuffer_new();
    if (v2) {
        evbuffer_add_printf(body, "{\"code\":\"%s\",\"message\":\"", v2_code(status));
        json_string(body, msg);
        evbuffer_add(body, "\"}", 2);
    } else {
        evbuffer_add(body, "{\"error\":\"", 10);
        json_string(body, msg);
        evbuffer_add(body, "\"}", 2);
    }
    if (retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after_s);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", v);
    }
    reply_json(req, status, reason_of(status), body);
}

static void add_version_headers(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "X-Influxdb-Version", "tariffd-" TARIFFD_VERSION);
    evhttp_add_header(h, "X-Influxdb-Build", "tariffd");
}

/* ------------------------------------------------------------------ */
/* Authentication                                                      */

/* The tenant whose token_sha256 matches token, comparing in constant time
 * against every hash of every tenant (no early exit on a match). */
static const struct tenant *tenant_of_token(const struct config *cfg, const char *token, size_t len)
{
    unsigned char digest[32];
    unsigned int n = 0;
    if (!EVP_Digest(token, len, digest, &n, EVP_sha256(), NULL))
        return NULL;
    const struct tenant *found = NULL;
    for (size_t i = 0; i < cfg->n_tenants; i++)
        for (size_t k = 0; k < cfg->tenants[i].n_tokens; k++)
            if (CRYPTO_memcmp(digest, cfg->tenants[i].token_sha256[k], 32) == 0)
                found = &cfg->tenants[i];
    OPENSSL_cleanse(digest, sizeof digest);
    return found;
}

static const struct tenant *authenticate(const struct config *cfg, struct evhttp_request *req,
                                         const struct evkeyvalq *query, bool v2)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (auth) {
        if (strncmp(auth, "Token ", 6) == 0)
            return tenant_of_token(cfg, auth + 6, strlen(auth + 6));
        if (strncmp(auth, "Bearer ", 7) == 0)
            return tenant_of_token(cfg, auth + 7, strlen(auth + 7));
        if (strncmp(auth, "Basic ", 6) == 0) {
            const char *b64 = auth + 6;
            size_t len = strlen(b64);
            if (len == 0 || len % 4 != 0 || len > 4096)
                return NULL;
            unsigned char decoded[3072 + 4];
            int n = EVP_DecodeBlock(decoded, (const unsigned char *)b64, (int)len);
            if (n < 0)
                return NULL;
            /* EVP_DecodeBlock counts padding as zero bytes. */
            if (b64[len - 1] == '=')
                n--;
            if (b64[len - 2] == '=')
                n--;
            unsigned char *colon = memchr(decoded, ':', (size_t)n);
            const struct tenant *t = colon ? tenant_of_token(cfg, (const char *)colon + 1,
                                                             (size_t)(decoded + n - colon - 1))
                                           : NULL;
            OPENSSL_cleanse(decoded, sizeof decoded);
            return t;
        }
        return NULL;
    }
    const char *p = v2 ? NULL : evhttp_find_header(query, "p");
    return p ? tenant_of_token(cfg, p, strlen(p)) : NULL;
}

/* ------------------------------------------------------------------ */
/* Bodies                                                              */

/* Inflates a gzip body into *out (malloc'd), refusing more than max bytes.
 * Returns 0, 413 (too large) or 400 (not gzip). */
static int gunzip(const unsigned char *in, size_t len, uint64_t max, char **out, size_t *out_len)
{
    z_stream z = {0};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return 400;
    size_t cap = len * 4 + 4096;
    if (cap > max + 1)
        cap = max + 1;
    char *buf = xmalloc(cap);
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    int rc = Z_OK;
    size_t have = 0;
    while (rc != Z_STREAM_END) {
        if (have == cap) {
            if (cap > max) {
                rc = Z_BUF_ERROR;
                break;
            }
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            buf = xrealloc(buf, cap);
        }
        z.next_out = (unsigned char *)buf + have;
        z.avail_out = (uInt)(cap - have);
        rc = inflate(&z, Z_NO_FLUSH);
        have = cap - z.avail_out;
        if (rc != Z_OK && rc != Z_STREAM_END)
            break;
        if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
            rc = Z_DATA_ERROR; /* truncated stream */
            break;
        }
    }
    inflateEnd(&z);
    if (have > max) {
        free(buf);
        return 413;
    }
    if (rc != Z_STREAM_END) {
        free(buf);
        return 400;
    }
    *out = buf;
    *out_len = have;
    return 0;
}

/* A refused write: counted by status, answered in the endpoint's shape. */
static void write_error(struct server *s, struct evhttp_request *req, bool v2, int status,
                        const char *msg, int retry_after_s)
{
    metrics_write_refused(server_metrics(s), v2 ? ENDPOINT_WRITE_V2 : ENDPOINT_WRITE_V1, status);
    http_error(req, v2, status, msg, retry_after_s);
}

/* The body of an admitted write: decompressed, parsed whole, accepted. */
static void parse_and_accept(struct server *s, struct evhttp_request *req, bool v2,
                             const struct tenant *tenant, enum lp_precision precision,
                             int64_t now_ns)
{
    const struct config *cfg = server_config(s);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const unsigned char *raw = evbuffer_pullup(in, -1);
    char *inflated = NULL;
    const char *body = (const char *)raw;
    const char *encoding =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Encoding");
    if (encoding && strcmp(encoding, "gzip") == 0) {
        int rc = gunzip(raw, len, cfg->daemon.max_body_bytes, &inflated, &len);
        if (rc == 413) {
            char msg[96];
            snprintf(msg, sizeof msg, "request body larger than max_body (%llu bytes) after gzip",
                     (unsigned long long)cfg->daemon.max_body_bytes);
            write_error(s, req, v2, 413, msg, 0);
            return;
        }
        if (rc) {
            write_error(s, req, v2, 400, "request body is not valid gzip", 0);
            return;
        }
        body = inflated;
    } else if (encoding && strcmp(encoding, "identity") != 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "unsupported Content-Encoding \"%.32s\" (expected gzip)",
                 encoding);
        write_error(s, req, v2, 400, msg, 0);
        return;
    }

    struct record_buf record = {0};
    struct ingest_meters meters = {0};
    struct ingest_result res;
    ingest_parse_cached(cfg, server_engine(s), tenant, body ? body : "", len, precision, now_ns,
                        server_ingest_cache(s), &record, &meters, &res);
    free(inflated);
    if (res.status != INGEST_OK)
        write_error(s, req, v2, res.status == INGEST_FORBIDDEN ? 403 : 400, res.msg, 0);
    else if (res.samples == 0) {
        metrics_request(server_metrics(s), v2 ? ENDPOINT_WRITE_V2 : ENDPOINT_WRITE_V1, 204);
        evhttp_send_reply(req, 204, "No Content", NULL);
    } else {
        server_accept(s, req, v2, &record, &meters);
    }
    record_buf_free(&record);
    ingest_meters_free(&meters);
}

static void handle_write(struct server *s, struct evhttp_request *req, bool v2)
{
    const struct config *cfg = server_config(s);
    struct evkeyvalq query;
    TAILQ_INIT(&query);
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (q && evhttp_parse_query_str(q, &query) != 0) {
        write_error(s, req, v2, 400, "malformed query string", 0);
        return;
    }
    const struct tenant *tenant = authenticate(cfg, req, &query, v2);
    if (!tenant) {
        evhttp_clear_headers(&query);
        write_error(s, req, v2, 401, "unauthorized access", 0);
        return;
    }
    enum lp_precision precision;
    const char *p = evhttp_find_header(&query, "precision");
    if (!lp_parse_precision(p, !v2, &precision)) {
        char msg[128];
        snprintf(msg, sizeof msg, "unknown precision \"%.32s\" (expected %s)", p,
                 v2 ? "ns, us, ms or s" : "n, u, ms, s, m or h");
        evhttp_clear_headers(&query);
        write_error(s, req, v2, 400, msg, 0);
        return;
    }
    evhttp_clear_headers(&query);
    /* One reading of the clock: the one checked is the one journaled. */
    int64_t now_ns = clock_wall_ns();
    const char *refusal = server_refuses_writes(s, now_ns);
    if (!refusal)
        refusal = server_shed_write(s);
    if (refusal) {
        write_error(s, req, v2, 503, refusal, 1);
        return;
    }
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    parse_and_accept(s, req, v2, tenant, precision, now_ns);
    server_write_work(s, &started);
}

static enum metrics_endpoint endpoint_of(const char *path)
{
    static const char *const paths[] = {"/write",  "/api/v2/write", "/ping",
                                        "/health", "/query",        "/metrics"};
    for (int i = 0; i < ENDPOINT_OTHER; i++)
        if (strcmp(path, paths[i]) == 0)
            return (enum metrics_endpoint)i;
    return ENDPOINT_OTHER;
}

/* /health: pass (rows are committed, or there is nothing to commit), warn
 * (degraded: PostgreSQL unreachable or failing, rows wait in the journal;
 * or closing waits for the yearly caps), or fail: writes are refused
 * (standby, backlog, disk, shutting down), or rows PostgreSQL refused wait
 * in dead_letters for an operator. A fail is 503, as InfluxDB answers it. */
static int health(struct server *s, struct evhttp_request *req, bool detailed)
{
    const char *refusal = server_refuses_writes(s, clock_wall_ns());
    const char *failed = refusal ? refusal : server_failed(s);
    const char *degraded = server_degraded(s);
    const char *status = failed ? "fail" : degraded ? "warn" : "pass";
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"name\":\"tariffd\",\"message\":\"");
    /* The reasons (PostgreSQL's own messages among them) are for the
     * operator, on metrics_listen; a tenant learns only the status. */
    json_string(b, !detailed  ? (failed     ? "not taking writes"
                                 : degraded ? "degraded"
                                            : "ready for writes")
                   : failed   ? failed
                   : degraded ? degraded
                              : "ready for writes");
    evbuffer_add_printf(b, "\",\"status\":\"%s\",\"checks\":[],\"version\":\"%s\"}", status,
                        TARIFFD_VERSION);
    add_version_headers(req);
    int code = failed ? 503 : 200;
    reply_json(req, code, code == 200 ? "OK" : "Service Unavailable", b);
    return code;
}

/* A request on a tenant listener (plain or TLS), or with admin on
 * metrics_listen, which serves /metrics, the detailed /health and /ping
 * only: a tenant never reads another's energy or PostgreSQL's errors. */
static void route(struct server *s, struct evhttp_request *req, bool admin)
{
    const char *uri_path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    const char *path = uri_path && *uri_path ? uri_path : "/";
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    bool v2 = uri_path && strncmp(uri_path, "/api/", 5) == 0;
    enum metrics_endpoint endpoint = endpoint_of(path);
    bool served = admin ? endpoint == ENDPOINT_METRICS || endpoint == ENDPOINT_HEALTH ||
                              endpoint == ENDPOINT_PING
                        : endpoint != ENDPOINT_METRICS;
    struct metrics *m = server_metrics(s);
    const char *allow = NULL;
    switch (served ? endpoint : ENDPOINT_OTHER) {
    case ENDPOINT_WRITE_V1:
    case ENDPOINT_WRITE_V2:
        if (cmd == EVHTTP_REQ_POST) {
            handle_write(s, req, v2); /* counts its own answer */
            return;
        }
        allow = "POST";
        break;
    case ENDPOINT_PING:
        if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD) {
            add_version_headers(req);
            evhttp_send_reply(req, 204, "No Content", NULL);
            metrics_request(m, endpoint, 204);
            return;
        }
        allow = "GET, HEAD";
        break;
    case ENDPOINT_HEALTH:
        if (cmd == EVHTTP_REQ_GET) {
            metrics_request(m, endpoint, health(s, req, admin));
            return;
        }
        allow = "GET";
        break;
    case ENDPOINT_QUERY:
        if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_POST) {
            struct evbuffer *b = evbuffer_new();
            evbuffer_add_printf(b, "{\"results\":[{\"statement_id\":0}]}");
            add_version_headers(req);
            reply_json(req, 200, "OK", b);
            metrics_request(m, endpoint, 200);
            return;
        }
        allow = "GET, POST";
        break;
    case ENDPOINT_METRICS:
        if (cmd == EVHTTP_REQ_GET) {
            metrics_request(m, endpoint, 200); /* this scrape counts itself */
            struct metrics_gauges g;
            server_gauges(s, &g);
            struct evbuffer *b = evbuffer_new();
            metrics_expose(m, &g, b);
            evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
            evhttp_send_reply(req, 200, "OK", b);
            evbuffer_free(b);
            return;
        }
        allow = "GET";
        break;
    default: {
        char msg[160];
        snprintf(msg, sizeof msg, "no such endpoint: %.100s", path);
        http_error(req, v2, 404, msg, 0);
        metrics_request(m, endpoint, 404);
        return;
    }
    }
    evhttp_add_header(out, "Allow", allow);
    char msg[96];
    snprintf(msg, sizeof msg, "method not allowed on %s (allowed: %s)", path, allow);
    http_error(req, v2, 405, msg, 0);
    metrics_request(m, endpoint, 405);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    route(arg, req, false);
}

static void on_admin_request(struct evhttp_request *req, void *arg)
{
    route(arg, req, true);
}

void http_install(struct server *s, struct evhttp *http, enum http_role role)
{
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                         EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, role == HTTP_ADMIN ? on_admin_request : on_request, s);
}
