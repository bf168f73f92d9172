#include "rowsink.h"

#include "storage/csv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const names[ROWSINK_FILES] = {"rows.csv", "demand.csv", "quarantine.csv"};
static const char quarantine_header[] = "cluster,meter,ts_ns,value,kind,reason,received_at\n";

struct rowsink {
    int fd[ROWSINK_FILES];
    uint64_t size[ROWSINK_FILES];
};

static const char *header(int file)
{
    return file == ROWSINK_ROWS     ? csv_billing_header
           : file == ROWSINK_DEMAND ? csv_demand_header
                                    : quarantine_header;
}

struct rowsink *rowsink_open(const char *dir, const uint64_t *sizes, struct error *err)
{
    struct rowsink *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    for (int i = 0; i < ROWSINK_FILES; i++)
        s->fd[i] = -1;
    for (int i = 0; i < ROWSINK_FILES; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        s->fd[i] = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        if (s->fd[i] < 0) {
            error_set(err, "could not open %s: %s", path, strerror(errno));
            rowsink_close(s);
            return NULL;
        }
        uint64_t size = sizes ? sizes[i] : 0;
        if (ftruncate(s->fd[i], (off_t)size) != 0) {
            error_set(err, "could not cut %s back to %llu bytes: %s", path,
                      (unsigned long long)size, strerror(errno));
            rowsink_close(s);
            return NULL;
        }
        s->size[i] = size;
        if (size == 0 && !rowsink_write(s, i, header(i), strlen(header(i)), err)) {
            rowsink_close(s);
            return NULL;
        }
    }
    return s;
}

void rowsink_close(struct rowsink *s)
{
    if (!s)
        return;
    for (int i = 0; i < ROWSINK_FILES; i++)
        if (s->fd[i] >= 0)
            close(s->fd[i]);
    free(s);
}

bool rowsink_write(struct rowsink *s, int file, const char *bytes, size_t len, struct error *err)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(s->fd[file], bytes + done, len - done, (off_t)(s->size[file] + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            error_set(err, "could not write %s: %s", names[file], strerror(errno));
            /* Leave no partial line behind. */
            if (ftruncate(s->fd[file], (off_t)s->size[file]) != 0) {
            }
            return false;
        }
        done += (size_t)n;
    }
    s->size[file] += len;
    return true;
}

void rowsink_sizes(const struct rowsink *s, uint64_t sizes[ROWSINK_FILES])
{
    for (int i = 0; i < ROWSINK_FILES; i++)
        sizes[i] = s->size[i];
}

bool rowsink_sync(const struct rowsink *s, struct error *err)
{
    for (int i = 0; i < ROWSINK_FILES; i++)
        if (fsync(s->fd[i]) != 0) {
            error_set(err, "could not fsync %s: %s", names[i], strerror(errno));
            return false;
        }
    return true;
}

size_t rowsink_quarantine_line(const struct engine_sample *smp, const char *reason,
                               int64_t received_ns, char *buf)
{
    size_t len = 0;
    buf[0] = '\0';
    csv_text(buf, &len, smp->cluster);
    buf[len++] = ',';
    buf[len] = '\0';
    csv_text(buf, &len, smp->meter);
    char received[32];
    csv_timestamp(received_ns / 1000000000, received);
    len += (size_t)snprintf(buf + len, CSV_LINE_MAX - len, ",%lld,%.17g,%s,", (long long)smp->ts_ns,
                            smp->value, smp->kind == SAMPLE_COUNTER ? "counter" : "power");
    csv_text(buf, &len, reason);
    len += (size_t)snprintf(buf + len, CSV_LINE_MAX - len, ",%s\n", received);
    return len;
}
