/*
 * scan_floor: the least a line-protocol reader must do, for bench/run: read
 * standard input in 1 MiB blocks, split it into lines (memchr) and parse
 * one number per line (the timestamp, the digits after the line's last
 * space, by hand). The time it takes is the floor under `tariffd price`
 * on the same file.
 *
 *   scan_floor <FILE
 *   scan_floor stdio <FILE
 *
 * With `stdio`, the same scan as a plain C program writes it: getline(3),
 * strrchr(3) for the last space, strtoll(3). Not a floor (it does the same
 * work about three times slower), but context: what the straightforward
 * program reads at (14 to 16 M lines/s on the machine of bench/RESULTS.md),
 * beside the least a reader must do.
 *
 * Prints the number of lines and the sum of the timestamps (so the parse
 * cannot be optimised away).
 */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK (1 << 20)

/* The digits after the last space of [s, end), as a number. */
static unsigned long long last_number(const char *s, const char *end)
{
    const char *p = end;
    while (p > s && p[-1] != ' ')
        p--;
    unsigned long long v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (unsigned)(*p - '0');
    return v;
}

static int scan_stdio(void)
{
    char *line = NULL;
    size_t cap = 0;
    unsigned long long lines = 0, sum = 0;
    while (getline(&line, &cap, stdin) > 0) {
        const char *space = strrchr(line, ' ');
        if (space)
            sum += (unsigned long long)strtoll(space + 1, NULL, 10);
        lines++;
    }
    free(line);
    if (ferror(stdin)) {
        perror("scan_floor: read");
        return 1;
    }
    printf("%llu %llu\n", lines, sum);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "stdio") == 0)
        return scan_stdio();
    if (argc != 1) {
        fprintf(stderr, "usage: scan_floor [stdio] <FILE\n");
        return 2;
    }
    char *buf = malloc(2 * BLOCK);
    size_t have = 0;
    unsigned long long lines = 0, sum = 0;
    for (;;) {
        ssize_t n = read(0, buf + have, 2 * BLOCK - have);
        if (n < 0) {
            perror("scan_floor: read");
            return 1;
        }
        if (n == 0)
            break;
        have += (size_t)n;
        const char *p = buf, *end = buf + have, *nl;
        while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
            sum += last_number(p, nl);
            lines++;
            p = nl + 1;
        }
        have = (size_t)(end - p);
        if (have == 2 * BLOCK) {
            fprintf(stderr, "scan_floor: a line longer than %d bytes\n", 2 * BLOCK);
            return 1;
        }
        memmove(buf, p, have);
    }
    if (have > 0) {
        sum += last_number(buf, buf + have);
        lines++;
    }
    printf("%llu %llu\n", lines, sum);
    return 0;
}
