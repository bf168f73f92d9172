/*
 * touch_floor: what it costs to take BYTES of fresh memory from the kernel
 * and write it once, as tariffd's sample pool takes it (tariff/sample_mem.c:
 * anonymous memory the kernel is asked to back with 2 MiB pages), for
 * bench/run. `tariffd price` keeps every sample of the late window (8
 * bytes each when packed, tariff/meter.h: all of them when the input spans
 * less than late_window), so
 * on a machine where first touching memory is dear (a virtual machine
 * whose host backs the guest's memory lazily), that alone is a floor under
 * it, which the scan floor (bench/scan_floor.c, 2 MiB of buffer) does not
 * have.
 *
 *   touch_floor BYTES
 *
 * Prints the seconds the first touch took, then the seconds a second write
 * of the same memory took (what the touch would cost were the memory warm).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: touch_floor BYTES\n");
        return 2;
    }
    size_t n = strtoull(argv[1], NULL, 10);
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("touch_floor: mmap");
        return 1;
    }
    (void)madvise(p, n, MADV_HUGEPAGE);
    double t0 = now();
    for (size_t i = 0; i < n; i += 4096)
        p[i] = 1;
    double t1 = now();
    memset(p, 2, n);
    double t2 = now();
    printf("%.3f %.3f\n", t1 - t0, t2 - t1);
    return 0;
}
