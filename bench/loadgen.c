/*
 * loadgen: an InfluxDB write load for tariffd's ingest benchmark.
 *
 *   loadgen PORT TOKEN CLUSTERS METERS ROUNDS THREADS LINES START_S
 *
 * THREADS keep-alive connections to 127.0.0.1:PORT; the clusters are split
 * between them (so each meter's samples arrive in order). In each round
 * every meter reports once, timestamp START_S + 10 x round (precision s),
 * in POST /api/v2/write requests of LINES lines. Bodies are built before
 * the clock starts. A 503 (the daemon shedding load) is waited out for its
 * Retry-After and the request sent again, counted as a retry. Prints
 * samples per second, the p50/p99 request
 * latency (time to the 204) and the wall-clock time the first request went.
 *
 * With LOADGEN_TLS_CA=FILE in the environment the connections speak TLS
 * (OpenSSL, the server's certificate checked against FILE for the name
 * "localhost"), each handshake made before the clock starts.
 */
#include "power.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct request {
    char *data; /* the whole HTTP request */
    size_t len;
    long lines;
};

struct worker {
    int port;
    SSL_CTX *tls; /* NULL: plain */
    SSL *ssl;
    int fd;
    struct request *reqs;
    size_t n_reqs;
    double *latency_ms;
    long samples;
    long retries; /* 503s waited out (the daemon shedding load) */
    int failed;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static ssize_t send_some(struct worker *w, const char *p, size_t n)
{
    if (!w->ssl)
        return write(w->fd, p, n);
    int r = SSL_write(w->ssl, p, (int)n);
    return r > 0 ? r : -1;
}

static ssize_t recv_some(struct worker *w, char *p, size_t n)
{
    if (!w->ssl)
        return read(w->fd, p, n);
    int r = SSL_read(w->ssl, p, (int)n);
    return r > 0 ? r : -1;
}

/* Connects (and shakes hands) before the clock starts. */
static int connect_worker(struct worker *w)
{
    w->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(w->fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        return -1;
    }
    if (!w->tls)
        return 0;
    w->ssl = SSL_new(w->tls);
    SSL_set_fd(w->ssl, w->fd);
    SSL_set_tlsext_host_name(w->ssl, "localhost");
    SSL_set1_host(w->ssl, "localhost");
    if (SSL_connect(w->ssl) != 1) {
        ERR_print_errors_fp(stderr);
        return -1;
    }
    return 0;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    char buf[4096];
    for (size_t i = 0; i < w->n_reqs; i++) {
        double t = now_s();
    again:
        for (size_t off = 0; off < w->reqs[i].len;) {
            ssize_t n = send_some(w, w->reqs[i].data + off, w->reqs[i].len - off);
            if (n <= 0) {
                perror("write");
                w->failed = 1;
                return NULL;
            }
            off += (size_t)n;
        }
        /* A 204 has no body: read up to the end of the headers. */
        size_t have = 0;
        char *end;
        while (!(have >= 4 && (end = memmem(buf, have, "\r\n\r\n", 4)))) {
            ssize_t n = recv_some(w, buf + have, sizeof buf - have - 1);
            if (n <= 0) {
                fprintf(stderr, "connection closed\n");
                w->failed = 1;
                return NULL;
            }
            have += (size_t)n;
        }
        buf[have] = '\0';
        if (strncmp(buf, "HTTP/1.1 503", 12) == 0) {
            /* Shedding load: wait out its Retry-After (1 s without one) and
             * send the same request again, as a well-behaved client does.
             * The headers are read before the body, which is read past (so
             * the connection stays in step) into a scratch buffer. */
            *end = '\0'; /* the headers alone */
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            const char *ra = strcasestr(buf, "\r\nRetry-After:");
            size_t body = cl ? strtoul(cl + 17, NULL, 10) : 0;
            double wait = ra ? atof(ra + 15) : 1;
            size_t got = have - (size_t)(end + 4 - buf);
            char scratch[4096];
            while (got < body) {
                size_t want = body - got < sizeof scratch ? body - got : sizeof scratch;
                ssize_t n = recv_some(w, scratch, want);
                if (n <= 0) {
                    fprintf(stderr, "connection closed\n");
                    w->failed = 1;
                    return NULL;
                }
                got += (size_t)n;
            }
            w->retries++;
            struct timespec d = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&d, NULL);
            goto again;
        }
        if (strncmp(buf, "HTTP/1.1 204", 12) != 0) {
            fprintf(stderr, "unexpected answer: %.200s\n", buf);
            w->failed = 1;
            return NULL;
        }
        w->latency_ms[i] = (now_s() - t) * 1000;
        w->samples += w->reqs[i].lines;
    }
    if (w->ssl) {
        SSL_shutdown(w->ssl);
        SSL_free(w->ssl);
    }
    close(w->fd);
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: loadgen PORT TOKEN CLUSTERS METERS ROUNDS THREADS LINES START_S\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *token = argv[2];
    long clusters = atol(argv[3]), meters = atol(argv[4]), rounds = atol(argv[5]);
    int threads = atoi(argv[6]);
    long lines = atol(argv[7]);
    long long start = atoll(argv[8]);
    struct worker *w = calloc((size_t)threads, sizeof *w);
    for (int t = 0; t < threads; t++) {
        long c0 = clusters * t / threads, c1 = clusters * (t + 1) / threads;
        long per_round = (c1 - c0) * meters;
        size_t per_round_reqs = (size_t)((per_round + lines - 1) / lines);
        w[t].port = port;
        w[t].n_reqs = per_round_reqs * (size_t)rounds;
        w[t].reqs = calloc(w[t].n_reqs, sizeof *w[t].reqs);
        w[t].latency_ms = calloc(w[t].n_reqs, sizeof(double));
        size_t r = 0;
        for (long round = 0; round < rounds; round++) {
            long i = 0;
            while (i < per_round) {
                long n = per_round - i < lines ? per_round - i : lines;
                size_t cap = (size_t)n * 64 + 512;
                char *body = malloc(cap);
                size_t len = 0;
                for (long k = 0; k < n; k++, i++) {
                    len += (size_t)snprintf(body + len, cap - len,
                                            "power,cluster=bench-%05ld,meter=m%03ld kw=%.2f %lld\n",
                                            c0 + i / meters, i % meters,
                                            power_kw(c0 + i / meters, i % meters, round),
                                            start + round * 10);
                }
                char *req = malloc(len + 512);
                int h = snprintf(req, 512,
                                 "POST /api/v2/write?org=o&bucket=b&precision=s HTTP/1.1\r\n"
                                 "Host: 127.0.0.1\r\nAuthorization: Token %s\r\n"
                                 "Content-Type: text/plain; charset=utf-8\r\n"
                                 "Content-Length: %zu\r\n\r\n",
                                 token, len);
                memcpy(req + h, body, len);
                free(body);
                w[t].reqs[r++] = (struct request){req, (size_t)h + len, n};
            }
        }
    }
    SSL_CTX *tls = NULL;
    const char *ca = getenv("LOADGEN_TLS_CA");
    if (ca && *ca) {
        tls = SSL_CTX_new(TLS_client_method());
        if (!tls || SSL_CTX_load_verify_locations(tls, ca, NULL) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
        SSL_CTX_set_verify(tls, SSL_VERIFY_PEER, NULL);
    }
    for (int t = 0; t < threads; t++) {
        w[t].tls = tls;
        if (connect_worker(&w[t]) != 0)
            return 1;
    }
    double t0 = now_s();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    for (int t = 0; t < threads; t++)
        pthread_create(&tid[t], NULL, run, &w[t]);
    long samples = 0, retries = 0;
    size_t n_lat = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (w[t].failed)
            return 1;
        samples += w[t].samples;
        retries += w[t].retries;
        n_lat += w[t].n_reqs;
    }
    double elapsed = now_s() - t0;
    double *lat = calloc(n_lat, sizeof *lat);
    size_t k = 0;
    for (int t = 0; t < threads; t++)
        for (size_t i = 0; i < w[t].n_reqs; i++)
            lat[k++] = w[t].latency_ms[i];
    qsort(lat, n_lat, sizeof *lat, by_value);
    printf("samples %ld seconds %.3f rate %.0f requests %zu p50_ms %.2f p99_ms %.2f retries %ld "
           "started %.3f\n",
           samples, elapsed, samples / elapsed, n_lat, lat[n_lat / 2], lat[n_lat * 99 / 100],
           retries, (double)wall.tv_sec + wall.tv_nsec / 1e9);
    return 0;
}
