/*
 * What the daemon's fuzz targets (fuzz_http.c, fuzz_journal.c) share: the
 * invariant check, an independent UTF-8 checker, the config they run
 * under, and the regression runner's main (built with -DFUZZ_STANDALONE).
 *
 * Header only: each target is one translation unit, so libFuzzer builds
 * need no extra object (tests/fuzz_run.sh).
 */
#ifndef TESTS_FUZZ_COMMON_H
#define TESTS_FUZZ_COMMON_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Whether s[0..n) is UTF-8 as RFC 3629 has it: no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated
 * sequence. Written from the RFC's table, not shared with the parser. */
static inline bool fuzz_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false; /* a continuation byte, or 0xf8..0xff */
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* The config both targets run under (the shape of tests/daemon/daemon.conf.in):
 * two tenants with known tokens (t1: "t1-secret" or "t1-second"; t2:
 * "t2-secret"), three clusters, a tariff with two versions, a programme
 * with a yearly cap, and small limits: 50 meters a tenant, 3 for t2, a
 * 64 KiB body. */
static const char fuzz_config_text[] =
    "[daemon]\n"
    "listen = 127.0.0.1:8086\n"
    "state_dir = /nonexistent/tariffd-fuzz\n"
    "interval = 15m\n"
    "grace = 1s\n"
    "max_gap = 5m\n"
    "late_window = 6h\n"
    "max_future = 5m\n"
    "max_body = 64KiB\n"
    "max_meters_per_tenant = 50\n"
    "idle_timeout = 1s\n"
    "max_connections = 4\n"
    "\n"
    "[tenant t1]\n"
    "; sha256(\"t1-secret\"), sha256(\"t1-second\")\n"
    "token_sha256 = 3cf816fad94399c3de220be01f4e6d358e8b656a045cd5c85aab77ad7a932cec, "
    "9f0e7f30793014b1ff6989904ab7323a4b0e2c80c0abb8d84c36c2111a5c7c48\n"
    "\n"
    "[tenant t2]\n"
    "; sha256(\"t2-secret\")\n"
    "token_sha256 = e21710db0ccf69a5d13dbb29774769a0619cb9130e53a3caa4044704db888f70\n"
    "max_meters = 3\n"
    "\n"
    "[chip dom]\n"
    "vendor = A\n"
    "domestic = yes\n"
    "rated_kw = 1\n"
    "\n"
    "[chip for]\n"
    "vendor = B\n"
    "domestic = no\n"
    "rated_kw = 1\n"
    "\n"
    "[site s1]\n"
    "province = p1\n"
    "tariff = tf\n"
    "\n"
    "[cluster c1]\n"
    "tenant = t1\n"
    "site = s1\n"
    "inventory = dom*3, for*1\n"
    "\n"
    "[cluster c2]\n"
    "tenant = t1\n"
    "site = s1\n"
    "inventory = dom*1, for*1\n"
    "\n"
    "[cluster x1]\n"
    "tenant = t2\n"
    "site = s1\n"
    "inventory = dom*1\n"
    "\n"
    "[tariff tf @ 2025-01-01]\n"
    "utc_offset = +08:00\n"
    "price.valley = 0.25\n"
    "price.flat = 0.5\n"
    "price.peak = 1.0\n"
    "surcharge = 0.02\n"
    "profile.base = 00:00 valley, 08:00 flat, 18:00 peak, 23:00 flat\n"
    "months = jan-dec base\n"
    "demand_basis = max_demand\n"
    "demand.kw = 30\n"
    "\n"
    "[tariff tf @ 2025-07-01]\n"
    "utc_offset = +08:00\n"
    "price.valley = 0.3\n"
    "price.flat = 0.6\n"
    "price.peak = 1.2\n"
    "surcharge = 0.02\n"
    "profile.base = 00:00 valley, 08:00 flat, 18:00 peak, 23:00 flat\n"
    "months = jan-dec base\n"
    "demand_basis = max_demand\n"
    "demand.kw = 30\n"
    "\n"
    "[programme pa]\n"
    "provinces = p1\n"
    "from = 2025-01-01\n"
    "min_domestic_share = 0.5\n"
    "rate = 0.5\n"
    "basis = energy\n"
    "mode = pro_rata\n"
    "cap_cny_per_year = 100\n";

#ifdef FUZZ_STANDALONE
/* Runs the target on one file; returns 1 (one input run). */
static inline int fuzz_run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (len == cap)
            buf = realloc(buf, cap *= 2);
        if (!buf)
            abort();
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    /* An exact-size copy, so ASan sees a read past the end. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact)
        abort();
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 1;
}

static int fuzz_by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Runs the target on every file named, and on every file of every
 * directory named (sorted, not recursive, skipping dot files,
 * subdirectories and README.md / *.py, which document or make a corpus).
 * Returns the count. */
static inline int fuzz_run_paths(int argc, char **argv)
{
    int n = 0;
    for (int i = 0; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            exit(1);
        }
        if (!S_ISDIR(st.st_mode)) {
            n += fuzz_run_file(argv[i]);
            continue;
        }
        struct dirent **names;
        int k = scandir(argv[i], &names, NULL, fuzz_by_name);
        if (k < 0) {
            perror(argv[i]);
            exit(1);
        }
        for (int j = 0; j < k; j++) {
            const char *name = names[j]->d_name;
            size_t len = strlen(name);
            bool skip = name[0] == '.' || strcmp(name, "README.md") == 0 ||
                        (len > 3 && strcmp(name + len - 3, ".py") == 0) ||
                        names[j]->d_type == DT_DIR;
            if (!skip) {
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", argv[i], name);
                n += fuzz_run_file(path);
            }
            free(names[j]);
        }
        free(names);
    }
    return n;
}
#endif

#endif
