#include "daemon/correction_cli.h"

#include "build_config.h"

#include "daemon/control.h"
#include "daemon/control_client.h"
#include "daemon/loader.h"
#include "tariff/alloc.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long a command waits for an answer: a commit or a requeue may wait
 * for the ledger to catch up, then for PostgreSQL to commit the rows. */
#define ANSWER_TIMEOUT_S 600

/* The longest a piece waits for more input: well inside HISTORY_IDLE_S. */
#define FLUSH_S 10

#define TARIFFD_DEFAULT_CONFIG TARIFFD_SYSCONFDIR "/tariffd.conf"

/* The control socket of the daemon the config at config_path runs; false
 * after saying why on stderr. */
static bool socket_of(const char *cmd, const char *config_path, char *path, size_t size)
{
    struct errors errs = {0};
    struct config *cfg = loader_load(config_path, NULL, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    if (errs.dropped)
        fprintf(stderr, "(and %zu more errors)\n", errs.dropped);
    errors_free(&errs);
    if (!cfg)
        return false;
    struct error err;
    bool ok = control_socket_path(cfg->daemon.state_dir, path, size, &err);
    config_free(cfg);
    if (!ok)
        fprintf(stderr, "tariffd %s: %s: %s\n", cmd, config_path, err.msg);
    return ok;
}

/* One request; the answer's status (0 when there was none, said on
 * stderr) and body (the caller's). */
static int call(const char *cmd, const char *path, const char *target, const char *content,
                size_t len, char **body)
{
    int code = 0;
    struct error err;
    *body = NULL;
    enum control_call_result r =
        control_send(path, "POST", target, content, len, ANSWER_TIMEOUT_S, &code, body, &err);
    if (r == CONTROL_CANNOT_CONNECT)
        fprintf(stderr, "tariffd %s: is the daemon running? %s\n", cmd, err.msg);
    else if (r == CONTROL_FAILED)
        fprintf(stderr, "tariffd %s: %s\n", cmd, err.msg);
    return r == CONTROL_ANSWERED ? code : 0;
}

/* An answer that is not 200, said on stderr (none: call said why);
 * returns 1, the exit status of a refusal. */
static int refused(const char *cmd, int code, char *body)
{
    if (!code || !body)
        return 1;
    body[strcspn(body, "\n")] = '\0';
    fprintf(stderr, "tariffd %s: %s\n", cmd, body[0] ? body : "the daemon answered with no reason");
    return 1;
}

/* refused, for backfill: a 400 is a refused line or option, exit status 2
 * as tariffd price's. */
static int refused_input(const char *cmd, int code, char *body)
{
    int status = refused(cmd, code, body);
    return code == 400 ? 2 : status;
}

/* 200's body to stdout; the exit status. */
static int print_answer(const char *cmd, int code, char *body)
{
    if (code != 200)
        return refused(cmd, code, body);
    fputs(body, stdout);
    return fflush(stdout) == 0 ? 0 : 1;
}

int reprice_main(int argc, char **argv)
{
    enum { OPT_FROM = 256, OPT_TO, OPT_CLUSTER, OPT_DRY_RUN };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"cluster", required_argument, NULL, OPT_CLUSTER},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char usage[] = "usage: tariffd reprice [-c FILE] --from YYYY-MM-DD --to "
                                "YYYY-MM-DD [--cluster ID]... [--dry-run]\n";
    const char *config_path = TARIFFD_DEFAULT_CONFIG, *from = NULL, *to = NULL;
    bool dry_run = false;
    size_t target_len = 64;
    char **clusters = xcalloc((size_t)argc, sizeof *clusters);
    size_t n_clusters = 0;
    int opt, status = 2;
    while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_FROM:
            from = optarg;
            break;
        case OPT_TO:
            to = optarg;
            break;
        case OPT_CLUSTER:
            clusters[n_clusters] = control_query_escape(optarg);
            target_len += 9 + strlen(clusters[n_clusters++]);
            break;
        case OPT_DRY_RUN:
            dry_run = true;
            break;
        case 'h':
            fputs(usage, stdout);
            status = 0;
            goto out;
        default:
            fputs(usage, stderr);
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tariffd reprice: unexpected argument \"%s\"\n", argv[optind]);
        fputs(usage, stderr);
        goto out;
    }
    if (!from || !to) {
        fprintf(stderr, "tariffd reprice: --from and --to are required\n");
        fputs(usage, stderr);
        goto out;
    }
    status = 1;
    char path[256];
    if (!socket_of("reprice", config_path, path, sizeof path))
        goto out;
    char *from_q = control_query_escape(from), *to_q = control_query_escape(to);
    target_len += strlen(from_q) + strlen(to_q);
    char *target = xmalloc(target_len);
    size_t w = (size_t)snprintf(target, target_len, "/reprice?from=%s&to=%s", from_q, to_q);
    for (size_t i = 0; i < n_clusters; i++)
        w += (size_t)snprintf(target + w, target_len - w, "&cluster=%s", clusters[i]);
    if (dry_run)
        snprintf(target + w, target_len - w, "&dry_run=1");
    free(from_q);
    free(to_q);
    char *body;
    int code = call("reprice", path, target, NULL, 0, &body);
    free(target);
    /* Every refusal is the daemon's (it validates the arguments): 1. */
    status = print_answer("reprice", code, body);
    free(body);
out:
    for (size_t i = 0; i < n_clusters; i++)
        free(clusters[i]);
    free(clusters);
    return status;
}

int backfill_main(int argc, char **argv)
{
    enum { OPT_PRECISION = 256, OPT_DRY_RUN, OPT_QUIET };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"precision", required_argument, NULL, OPT_PRECISION},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = TARIFFD_DEFAULT_CONFIG, *precision = "ns";
    bool dry_run = false, quiet = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_PRECISION:
            precision = optarg;
            break;
        case OPT_DRY_RUN:
            dry_run = true;
            break;
        case OPT_QUIET:
            quiet = true;
            break;
        case 'h':
            printf("usage: tariffd backfill [-c FILE] [--precision ns|us|ms|s] [--dry-run] "
                   "[--quiet] < history.lp\n");
            return 0;
        default:
            fprintf(stderr, "usage: tariffd backfill [-c FILE] [--precision ns|us|ms|s] "
                            "[--dry-run] [--quiet] < history.lp\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tariffd backfill: unexpected argument \"%s\" (the input is stdin)\n",
                argv[optind]);
        return 2;
    }
    char path[256];
    if (!socket_of("backfill", config_path, path, sizeof path))
        return 1;
    char *q = control_query_escape(precision), target[160];
    snprintf(target, sizeof target, "/backfill?precision=%.40s%s", q, dry_run ? "&dry_run=1" : "");
    free(q);
    char *body;
    int code = call("backfill", path, target, NULL, 0, &body);
    uint64_t session;
    if (code != 200 || sscanf(body, "session %" SCNu64, &session) != 1) {
        int status = refused_input("backfill", code, body);
        free(body);
        return status;
    }
    free(body);
    snprintf(target, sizeof target, "/backfill/lines?session=%" PRIu64, session);

    /* Whole lines, BACKFILL_PIECE_BYTES at a time (a longer line whole),
     * or what has come every FLUSH_S from an input slower than that, so
     * the session never idles out while the input flows. */
    size_t cap = BACKFILL_PIECE_BYTES, have = 0;
    char *buf = xmalloc(cap);
    uint64_t sent = 0, pieces = 0;
    int status = 0;
    time_t last = time(NULL);
    for (bool eof = false; !eof;) {
        ssize_t got = read(STDIN_FILENO, buf + have, cap - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            fprintf(stderr, "tariffd backfill: reading the input failed: %s\n", strerror(errno));
            status = 1;
            break;
        }
        have += (size_t)got;
        eof = got == 0;
        if (!eof && have < cap && time(NULL) - last < FLUSH_S)
            continue;
        size_t upto = have;
        if (!eof) {
            while (upto > 0 && buf[upto - 1] != '\n')
                upto--;
            if (upto == 0 && have == cap) { /* one line longer than the buffer */
                cap *= 2;
                buf = xrealloc(buf, cap);
            }
        }
        if (upto == 0)
            continue; /* at the end of input: nothing left */
        code = call("backfill", path, target, buf, upto, &body);
        if (code != 200) {
            status = refused_input("backfill", code, body);
            free(body);
            break;
        }
        last = time(NULL);
        sent += upto;
        pieces++;
        body[strcspn(body, "\n")] = '\0';
        if (!quiet)
            fprintf(stderr, "tariffd backfill: %.1f MB sent, %s\n", (double)sent / 1e6, body);
        free(body);
        memmove(buf, buf + upto, have - upto);
        have -= upto;
    }
    free(buf);
    if (status != 0) {
        snprintf(target, sizeof target, "/backfill/abort?session=%" PRIu64, session);
        char *ignored = NULL;
        int ignored_code = 0;
        struct error err;
        control_send(path, "POST", target, NULL, 0, 10, &ignored_code, &ignored, &err);
        free(ignored);
        return status;
    }
    if (!quiet)
        fprintf(stderr, "tariffd backfill: all sent (%" PRIu64 " pieces); pricing\n", pieces);
    snprintf(target, sizeof target, "/backfill/commit?session=%" PRIu64, session);
    code = call("backfill", path, target, NULL, 0, &body);
    status =
        code == 200 ? print_answer("backfill", code, body) : refused_input("backfill", code, body);
    free(body);
    return status;
}

int requeue_main(int argc, char **argv)
{
    enum { OPT_REASON = 256, OPT_FROM, OPT_TO, OPT_DRY_RUN };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"reason", required_argument, NULL, OPT_REASON},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char usage[] = "usage: tariffd requeue [-c FILE] [--reason TEXT] "
                                "[--from YYYY-MM-DD --to YYYY-MM-DD] [--dry-run]\n";
    const char *config_path = TARIFFD_DEFAULT_CONFIG, *reason = NULL, *from = NULL, *to = NULL;
    bool dry_run = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_REASON:
            reason = optarg;
            break;
        case OPT_FROM:
            from = optarg;
            break;
        case OPT_TO:
            to = optarg;
            break;
        case OPT_DRY_RUN:
            dry_run = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc || !from != !to) {
        fprintf(stderr,
                optind < argc ? "tariffd requeue: unexpected argument \"%s\"\n"
                              : "tariffd requeue: --from and --to go together%s\n",
                optind < argc ? argv[optind] : "");
        fputs(usage, stderr);
        return 2;
    }
    char path[256];
    if (!socket_of("requeue", config_path, path, sizeof path))
        return 1;
    struct {
        const char *key, *value;
    } params[] = {
        {"reason", reason}, {"from", from}, {"to", to}, {"dry_run", dry_run ? "1" : NULL}};
    size_t len = 16;
    char *escaped[4] = {0};
    for (int i = 0; i < 4; i++)
        if (params[i].value) {
            escaped[i] = control_query_escape(params[i].value);
            len += strlen(escaped[i]) + 16;
        }
    char *target = xmalloc(len);
    size_t w = (size_t)snprintf(target, len, "/requeue");
    for (int i = 0, first = 1; i < 4; i++)
        if (escaped[i]) {
            w += (size_t)snprintf(target + w, len - w, "%c%s=%s", first ? '?' : '&', params[i].key,
                                  escaped[i]);
            first = 0;
            free(escaped[i]);
        }
    char *body;
    int code = call("requeue", path, target, NULL, 0, &body);
    free(target);
    int status = print_answer("requeue", code, body);
    free(body);
    return status;
}
