#include "storage/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#define HEADER_BYTES       JOURNAL_RECORD_HEADER_BYTES
#define SEGMENT_NAME_BYTES 21 /* 16 hex digits, ".seg", NUL */
#define READ_CHUNK_BYTES   (1u << 20)

#define CHECKPOINT_MAGIC       0x4b434654u /* "TFCK" in little-endian order */
#define CHECKPOINT_VERSION     1u
#define CHECKPOINT_HEAD_BYTES  24 /* magic, version, lsn, payload length */
#define CHECKPOINT_FRAME_BYTES (CHECKPOINT_HEAD_BYTES + 4)

struct segment {
    uint64_t start_lsn;
    uint64_t size_bytes;
};

struct journal {
    char *path; /* DIR/journal */
    int dir_fd; /* DIR/journal, flocked for as long as the journal is open */
    int fd;     /* the current segment (the last one), read-write */
    uint64_t segment_bytes;
    struct segment *segs; /* oldest first; the last is the current one */
    size_t n_segs, cap_segs;
    uint64_t bytes; /* sum of segs[].size_bytes */
    bool broken;    /* a sync or a rollback failed: refuse everything */
};

/* ---------------------------------------------------------------- */
/* Little-endian fields, CRC, whole writes and buffered reads        */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* zlib's crc32 of a null buffer is its initial value, not a no-op: only
 * ever pass it real bytes. */
static uint32_t crc_more(uint32_t crc, const void *p, size_t len)
{
    return len > 0 ? (uint32_t)crc32_z(crc, p, len) : crc;
}

static uint32_t record_crc(uint8_t type, const void *payload, size_t len)
{
    return crc_more(crc_more(0, &type, 1), payload, len);
}

/* Writes all of iov at off; a short write (ENOSPC, EFBIG halfway) goes on
 * until the kernel says why it stopped. */
static bool pwrite_all(int fd, struct iovec *iov, int iovcnt, uint64_t off)
{
    while (iovcnt > 0) {
        if (iov->iov_len == 0) {
            iov++;
            iovcnt--;
            continue;
        }
        ssize_t n = pwritev(fd, iov, iovcnt, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return false;
        }
        off += (uint64_t)n;
        size_t left = (size_t)n;
        while (left > 0) {
            size_t step = left < iov->iov_len ? left : iov->iov_len;
            if (step) /* an empty piece may have no base at all */
                iov->iov_base = (char *)iov->iov_base + step;
            iov->iov_len -= step;
            left -= step;
            if (iov->iov_len == 0) {
                iov++;
                iovcnt--;
            }
        }
    }
    return true;
}

/* Reads a file through a window of at least READ_CHUNK_BYTES, so replaying
 * small records costs one pread per megabyte rather than two per record. */
struct reader {
    int fd;
    unsigned char *buf;
    size_t cap;
    uint64_t base; /* file offset of buf[0] */
    size_t len;    /* valid bytes in buf */
};

/* The n bytes at file offset off, which the caller checked lie within the
 * file. NULL with errno on a read error, errno 0 when the file is shorter. */
static const unsigned char *reader_at(struct reader *r, uint64_t off, size_t n)
{
    if (off >= r->base && off - r->base <= r->len && n <= r->len - (off - r->base))
        return r->buf + (off - r->base);
    size_t want = n > READ_CHUNK_BYTES ? n : READ_CHUNK_BYTES;
    if (want > r->cap) {
        unsigned char *grown = realloc(r->buf, want);
        if (!grown) {
            errno = ENOMEM;
            return NULL;
        }
        r->buf = grown;
        r->cap = want;
    }
    size_t got = 0;
    r->len = 0;
    while (got < want) {
        ssize_t k = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return NULL;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    r->base = off;
    r->len = got;
    if (got < n) {
        errno = 0;
        return NULL;
    }
    return r->buf;
}

static const char *read_error(void)
{
    return errno ? strerror(errno) : "the file is shorter than its records say";
}

/* ---------------------------------------------------------------- */
/* Records                                                           */

enum rec_status { REC_OK, REC_END, REC_BAD, REC_IO_ERROR };

struct record {
    uint32_t len;
    uint32_t crc;
    uint8_t type;
    const unsigned char *payload; /* only from read_record */
};

/* The header at off in a segment whose first limit bytes count; REC_BAD
 * explains itself in why. */
static enum rec_status read_header(struct reader *r, uint64_t off, uint64_t limit,
                                   struct record *rec, char *why, size_t why_size)
{
    if (off == limit)
        return REC_END;
    if (limit - off < HEADER_BYTES) {
        snprintf(why, why_size, "incomplete record header (%" PRIu64 " of %d bytes)", limit - off,
                 HEADER_BYTES);
        return REC_BAD;
    }
    const unsigned char *p = reader_at(r, off, HEADER_BYTES);
    if (!p)
        return REC_IO_ERROR;
    rec->len = get_u32(p);
    rec->crc = get_u32(p + 4);
    rec->type = p[8];
    rec->payload = NULL;
    if (rec->len > JOURNAL_MAX_PAYLOAD) {
        snprintf(why, why_size, "record length %" PRIu32 " exceeds the maximum %u", rec->len,
                 JOURNAL_MAX_PAYLOAD);
        return REC_BAD;
    }
    if (rec->len > limit - off - HEADER_BYTES) {
        snprintf(why, why_size,
                 "record length %" PRIu32 " goes beyond the end of the file (%" PRIu64
                 " bytes left)",
                 rec->len, limit - off - HEADER_BYTES);
        return REC_BAD;
    }
    if (rec->type == 0) {
        snprintf(why, why_size, "record type 0 is not valid");
        return REC_BAD;
    }
    return REC_OK;
}

/* read_header, then the payload and its CRC. */
static enum rec_status read_record(struct reader *r, uint64_t off, uint64_t limit,
                                   struct record *rec, char *why, size_t why_size)
{
    enum rec_status s = read_header(r, off, limit, rec, why, why_size);
    if (s != REC_OK)
        return s;
    const unsigned char *p = reader_at(r, off, HEADER_BYTES + (size_t)rec->len);
    if (!p)
        return REC_IO_ERROR;
    rec->payload = p + HEADER_BYTES;
    uint32_t crc = record_crc(rec->type, rec->payload, rec->len);
    if (crc != rec->crc) {
        snprintf(why, why_size, "crc32 mismatch (stored 0x%08" PRIx32 ", computed 0x%08" PRIx32 ")",
                 rec->crc, crc);
        return REC_BAD;
    }
    return REC_OK;
}

/* ---------------------------------------------------------------- */
/* Segments and directories                                          */

static void segment_name(uint64_t start_lsn, char name[SEGMENT_NAME_BYTES])
{
    snprintf(name, SEGMENT_NAME_BYTES, "%016" PRIx64 ".seg", start_lsn);
}

static bool parse_segment_name(const char *name, uint64_t *start_lsn)
{
    if (strlen(name) != SEGMENT_NAME_BYTES - 1 || strcmp(name + 16, ".seg") != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    *start_lsn = v;
    return true;
}

static struct segment *current(const struct journal *j)
{
    return &j->segs[j->n_segs - 1];
}

static bool refuse_if_broken(const struct journal *j, struct error *err)
{
    if (!j->broken)
        return false;
    error_set(err, "journal \"%s\" is unusable after a failed write or sync; restart to recover",
              j->path);
    return true;
}

static bool reserve_segment(struct journal *j, struct error *err)
{
    if (j->n_segs < j->cap_segs)
        return true;
    size_t cap = j->cap_segs ? 2 * j->cap_segs : 16;
    struct segment *grown = realloc(j->segs, cap * sizeof *grown);
    if (!grown) {
        error_set(err, "out of memory");
        return false;
    }
    j->segs = grown;
    j->cap_segs = cap;
    return true;
}

static bool fsync_dir(const char *path, struct error *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        error_set(err, "could not open directory \"%s\": %s", path, strerror(errno));
        return false;
    }
    bool ok = fsync(fd) == 0;
    if (!ok)
        error_set(err, "could not fsync directory \"%s\": %s", path, strerror(errno));
    close(fd);
    return ok;
}

/* mkdir that makes a new directory's entry durable in its parent. */
static bool make_dir(const char *path, struct error *err)
{
    if (mkdir(path, 0700) != 0) {
        if (errno == EEXIST)
            return true;
        error_set(err, "could not create directory \"%s\": %s", path, strerror(errno));
        return false;
    }
    char *parent = strdup(path);
    if (!parent) {
        error_set(err, "out of memory");
        return false;
    }
    char *slash = strrchr(parent, '/');
    if (!slash)
        strcpy(parent, ".");
    else if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    bool ok = fsync_dir(parent, err);
    free(parent);
    return ok;
}

/* Creates the segment starting at start_lsn and makes its directory entry
 * durable. A failed directory fsync breaks the journal. */
static int create_segment(struct journal *j, uint64_t start_lsn, struct error *err)
{
    char name[SEGMENT_NAME_BYTES];
    segment_name(start_lsn, name);
    int fd = openat(j->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        error_set(err, "could not create journal segment \"%s/%s\": %s", j->path, name,
                  strerror(errno));
        return -1;
    }
    if (fsync(j->dir_fd) != 0) {
        error_set(err, "could not fsync directory \"%s\": %s", j->path, strerror(errno));
        j->broken = true;
        close(fd);
        return -1;
    }
    return fd;
}

/* Finishes the current segment durably and starts the next one at the end. */
static bool rotate(struct journal *j, struct error *err)
{
    if (!reserve_segment(j, err))
        return false;
    struct segment *cur = current(j);
    if (fdatasync(j->fd) != 0) {
        char name[SEGMENT_NAME_BYTES];
        segment_name(cur->start_lsn, name);
        error_set(err, "could not fdatasync journal segment \"%s/%s\": %s", j->path, name,
                  strerror(errno));
        j->broken = true;
        return false;
    }
    uint64_t start = cur->start_lsn + cur->size_bytes;
    int fd = create_segment(j, start, err);
    if (fd < 0)
        return false;
    close(j->fd);
    j->fd = fd;
    j->segs[j->n_segs++] = (struct segment){start, 0};
    return true;
}

static int compare_segments(const void *a, const void *b)
{
    uint64_t x = ((const struct segment *)a)->start_lsn;
    uint64_t y = ((const struct segment *)b)->start_lsn;
    return (x > y) - (x < y);
}

static bool list_segments(struct journal *j, struct error *err)
{
    DIR *d = opendir(j->path);
    if (!d) {
        error_set(err, "could not open directory \"%s\": %s", j->path, strerror(errno));
        return false;
    }
    bool ok = true;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno != 0) {
                error_set(err, "could not read directory \"%s\": %s", j->path, strerror(errno));
                ok = false;
            }
            break;
        }
        uint64_t start;
        if (!parse_segment_name(e->d_name, &start))
            continue;
        struct stat st;
        if (fstatat(j->dir_fd, e->d_name, &st, 0) != 0) {
            error_set(err, "could not stat journal segment \"%s/%s\": %s", j->path, e->d_name,
                      strerror(errno));
            ok = false;
            break;
        }
        if (!reserve_segment(j, err)) {
            ok = false;
            break;
        }
        j->segs[j->n_segs++] = (struct segment){start, (uint64_t)st.st_size};
    }
    closedir(d);
    if (ok && j->n_segs > 0)
        qsort(j->segs, j->n_segs, sizeof *j->segs, compare_segments);
    return ok;
}

/* Finds the end of the last segment and cuts whatever follows its last good
 * record. */
static bool cut_tail(struct journal *j, uint64_t *cut_at, struct error *err)
{
    struct segment *cur = current(j);
    char name[SEGMENT_NAME_BYTES];
    segment_name(cur->start_lsn, name);
    struct stat st;
    if (fstat(j->fd, &st) != 0) {
        error_set(err, "could not stat journal segment \"%s/%s\": %s", j->path, name,
                  strerror(errno));
        return false;
    }
    uint64_t size = (uint64_t)st.st_size, off = 0;
    struct reader r = {.fd = j->fd};
    bool ok = true;
    for (;;) {
        struct record rec;
        char why[128];
        enum rec_status s = read_record(&r, off, size, &rec, why, sizeof why);
        if (s == REC_OK) {
            off += HEADER_BYTES + (uint64_t)rec.len;
            continue;
        }
        if (s == REC_IO_ERROR) {
            error_set(err, "could not read journal segment \"%s/%s\" at offset %" PRIu64 ": %s",
                      j->path, name, off, read_error());
            ok = false;
        } else if (s == REC_BAD) {
            /* Synced so that the garbage cannot come back after a power loss
             * behind records appended from here on. */
            if (ftruncate(j->fd, (off_t)off) != 0 || fdatasync(j->fd) != 0) {
                error_set(err, "could not cut journal segment \"%s/%s\" at offset %" PRIu64 ": %s",
                          j->path, name, off, strerror(errno));
                ok = false;
            } else if (cut_at) {
                *cut_at = cur->start_lsn + off;
            }
        }
        break;
    }
    free(r.buf);
    cur->size_bytes = off;
    return ok;
}

/* ---------------------------------------------------------------- */
/* Opening and closing                                               */

struct journal *journal_open(const char *dir, uint64_t segment_bytes, uint64_t *cut_at,
                             struct error *err)
{
    if (cut_at)
        *cut_at = JOURNAL_NOTHING_CUT;
    if (segment_bytes == 0) {
        error_set(err, "journal segment size must be positive");
        return NULL;
    }
    struct journal *j = calloc(1, sizeof *j);
    if (!j || asprintf(&j->path, "%s/journal", dir) < 0) {
        free(j);
        error_set(err, "out of memory");
        return NULL;
    }
    j->dir_fd = -1;
    j->fd = -1;
    j->segment_bytes = segment_bytes;
    if (!make_dir(dir, err) || !make_dir(j->path, err))
        goto fail;
    j->dir_fd = open(j->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dir_fd < 0) {
        error_set(err, "could not open directory \"%s\": %s", j->path, strerror(errno));
        goto fail;
    }
    if (flock(j->dir_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            error_set(err, "could not lock journal \"%s\": it is in use by another tariffd",
                      j->path);
        else
            error_set(err, "could not lock journal \"%s\": %s", j->path, strerror(errno));
        goto fail;
    }
    if (!list_segments(j, err))
        goto fail;
    if (j->n_segs == 0) {
        if (!reserve_segment(j, err))
            goto fail;
        j->fd = create_segment(j, 0, err);
        if (j->fd < 0)
            goto fail;
        j->segs[j->n_segs++] = (struct segment){0, 0};
    } else {
        char name[SEGMENT_NAME_BYTES];
        segment_name(current(j)->start_lsn, name);
        j->fd = openat(j->dir_fd, name, O_RDWR | O_CLOEXEC);
        if (j->fd < 0) {
            error_set(err, "could not open journal segment \"%s/%s\": %s", j->path, name,
                      strerror(errno));
            goto fail;
        }
        if (!cut_tail(j, cut_at, err))
            goto fail;
    }
    for (size_t i = 0; i < j->n_segs; i++)
        j->bytes += j->segs[i].size_bytes;
    return j;

fail:
    journal_close(j);
    return NULL;
}

void journal_close(struct journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    if (j->dir_fd >= 0)
        close(j->dir_fd);
    free(j->segs);
    free(j->path);
    free(j);
}

/* ---------------------------------------------------------------- */
/* Writing                                                           */

bool journal_append(struct journal *j, uint8_t type, const void *payload, size_t len, uint64_t *lsn,
                    struct error *err)
{
    if (refuse_if_broken(j, err))
        return false;
    if (type == 0) {
        error_set(err, "journal record type 0 is reserved");
        return false;
    }
    if (len > JOURNAL_MAX_PAYLOAD) {
        error_set(err, "journal record of %zu bytes exceeds the maximum %u", len,
                  JOURNAL_MAX_PAYLOAD);
        return false;
    }
    uint64_t record_bytes = HEADER_BYTES + (uint64_t)len;
    uint64_t used = current(j)->size_bytes;
    if (used > 0 && (record_bytes > j->segment_bytes || used > j->segment_bytes - record_bytes))
        if (!rotate(j, err))
            return false;

    struct segment *cur = current(j);
    unsigned char header[HEADER_BYTES];
    put_u32(header, (uint32_t)len);
    put_u32(header + 4, record_crc(type, payload, len));
    header[8] = type;
    struct iovec iov[2] = {{header, HEADER_BYTES}, {(void *)payload, len}};
    if (!pwrite_all(j->fd, iov, 2, cur->size_bytes)) {
        int write_errno = errno;
        char name[SEGMENT_NAME_BYTES];
        segment_name(cur->start_lsn, name);
        if (ftruncate(j->fd, (off_t)cur->size_bytes) != 0) {
            error_set(err,
                      "could not write journal record at offset %" PRIu64
                      " of \"%s/%s\" (%s), nor truncate it away: %s",
                      cur->size_bytes, j->path, name, strerror(write_errno), strerror(errno));
            j->broken = true;
            return false;
        }
        error_set(err, "could not write journal record at offset %" PRIu64 " of \"%s/%s\": %s",
                  cur->size_bytes, j->path, name, strerror(write_errno));
        return false;
    }
    cur->size_bytes += record_bytes;
    j->bytes += record_bytes;
    if (lsn)
        *lsn = cur->start_lsn + cur->size_bytes;
    return true;
}

bool journal_sync(struct journal *j, struct error *err)
{
    if (refuse_if_broken(j, err))
        return false;
    if (fdatasync(j->fd) != 0) {
        char name[SEGMENT_NAME_BYTES];
        segment_name(current(j)->start_lsn, name);
        error_set(err, "could not fdatasync journal segment \"%s/%s\": %s", j->path, name,
                  strerror(errno));
        j->broken = true;
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- */
/* Reading and trimming                                              */

uint64_t journal_end(const struct journal *j)
{
    return current(j)->start_lsn + current(j)->size_bytes;
}

uint64_t journal_start(const struct journal *j)
{
    return j->segs[0].start_lsn;
}

uint64_t journal_bytes(const struct journal *j)
{
    return j->bytes;
}

/* Walks the headers of segment from its start to off and checks that off is
 * where a record starts. */
static bool skip_to(struct journal *j, struct reader *r, const char *name, uint64_t limit,
                    uint64_t off, struct error *err)
{
    uint64_t pos = 0;
    while (pos < off) {
        struct record rec;
        char why[128];
        enum rec_status s = read_header(r, pos, limit, &rec, why, sizeof why);
        if (s == REC_IO_ERROR) {
            error_set(err, "could not read journal segment \"%s/%s\" at offset %" PRIu64 ": %s",
                      j->path, name, pos, read_error());
            return false;
        }
        if (s == REC_BAD) {
            error_set(err, "journal segment \"%s/%s\" at offset %" PRIu64 ": %s", j->path, name,
                      pos, why);
            return false;
        }
        if (s == REC_END)
            break;
        pos += HEADER_BYTES + (uint64_t)rec.len;
    }
    if (pos != off) {
        error_set(err, "replay start offset %" PRIu64 " of \"%s/%s\" is not a record boundary", off,
                  j->path, name);
        return false;
    }
    return true;
}

/* Replays one segment from off (a boundary). *stopped when fn said so. */
static bool replay_segment(struct journal *j, size_t i, uint64_t off, struct reader *r,
                           journal_record_fn fn, void *ctx, bool *stopped, struct error *err)
{
    const struct segment *seg = &j->segs[i];
    bool last = i == j->n_segs - 1;
    char name[SEGMENT_NAME_BYTES];
    segment_name(seg->start_lsn, name);
    int fd = last ? j->fd : openat(j->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_set(err, "could not open journal segment \"%s/%s\": %s", j->path, name,
                  strerror(errno));
        return false;
    }
    bool ok = false;
    uint64_t limit = seg->size_bytes;
    if (!last) {
        struct stat st;
        if (fstat(fd, &st) != 0) {
            error_set(err, "could not stat journal segment \"%s/%s\": %s", j->path, name,
                      strerror(errno));
            goto out;
        }
        limit = (uint64_t)st.st_size;
        uint64_t next = j->segs[i + 1].start_lsn;
        if (seg->start_lsn + limit != next) {
            error_set(err,
                      "journal segment \"%s/%s\" ends at LSN %" PRIu64
                      " but the next segment starts at LSN %" PRIu64,
                      j->path, name, seg->start_lsn + limit, next);
            goto out;
        }
    }
    *r = (struct reader){.fd = fd, .buf = r->buf, .cap = r->cap};
    if (!skip_to(j, r, name, limit, off, err))
        goto out;
    for (;;) {
        struct record rec;
        char why[128];
        enum rec_status s = read_record(r, off, limit, &rec, why, sizeof why);
        if (s == REC_END)
            break;
        if (s == REC_IO_ERROR) {
            error_set(err, "could not read journal segment \"%s/%s\" at offset %" PRIu64 ": %s",
                      j->path, name, off, read_error());
            goto out;
        }
        if (s == REC_BAD) {
            error_set(err, "journal segment \"%s/%s\" at offset %" PRIu64 ": %s", j->path, name,
                      off, why);
            goto out;
        }
        off += HEADER_BYTES + (uint64_t)rec.len;
        if (!fn(ctx, rec.type, rec.payload, rec.len, seg->start_lsn + off)) {
            *stopped = true;
            break;
        }
    }
    ok = true;
out:
    if (!last)
        close(fd);
    return ok;
}

bool journal_replay(struct journal *j, uint64_t from_lsn, journal_record_fn fn, void *ctx,
                    struct error *err)
{
    if (refuse_if_broken(j, err))
        return false;
    uint64_t end = journal_end(j);
    if (from_lsn > end) {
        error_set(err,
                  "replay start LSN %" PRIu64 " is beyond the end of journal \"%s\" (LSN %" PRIu64
                  ")",
                  from_lsn, j->path, end);
        return false;
    }
    size_t i = 0;
    if (from_lsn <= j->segs[0].start_lsn)
        from_lsn = j->segs[0].start_lsn;
    else
        for (i = j->n_segs - 1; j->segs[i].start_lsn > from_lsn; i--)
            ;
    uint64_t off = from_lsn - j->segs[i].start_lsn;
    struct reader r = {.fd = -1};
    bool ok = true, stopped = false;
    for (; ok && !stopped && i < j->n_segs; i++, off = 0)
        ok = replay_segment(j, i, off, &r, fn, ctx, &stopped, err);
    free(r.buf);
    if (ok && stopped) {
        err->msg[0] = '\0';
        return false;
    }
    return ok;
}

bool journal_trim(struct journal *j, uint64_t lsn, struct error *err)
{
    if (refuse_if_broken(j, err))
        return false;
    size_t k = 0;
    bool ok = true;
    while (k + 1 < j->n_segs && j->segs[k].start_lsn + j->segs[k].size_bytes <= lsn) {
        char name[SEGMENT_NAME_BYTES];
        segment_name(j->segs[k].start_lsn, name);
        if (unlinkat(j->dir_fd, name, 0) != 0 && errno != ENOENT) {
            error_set(err, "could not remove journal segment \"%s/%s\": %s", j->path, name,
                      strerror(errno));
            ok = false;
            break;
        }
        j->bytes -= j->segs[k].size_bytes;
        k++;
    }
    memmove(j->segs, j->segs + k, (j->n_segs - k) * sizeof *j->segs);
    j->n_segs -= k;
    return ok;
}

void journal_describe_lsn(const struct journal *j, uint64_t lsn, char *buf, size_t size)
{
    char name[SEGMENT_NAME_BYTES];
    segment_name(j->segs[0].start_lsn, name);
    if (lsn < j->segs[0].start_lsn) {
        snprintf(buf, size, "LSN %" PRIu64 " (before the oldest segment \"%s/%s\")", lsn, j->path,
                 name);
        return;
    }
    size_t i = j->n_segs - 1;
    while (j->segs[i].start_lsn > lsn)
        i--;
    segment_name(j->segs[i].start_lsn, name);
    snprintf(buf, size, "offset %" PRIu64 " of \"%s/%s\"", lsn - j->segs[i].start_lsn, j->path,
             name);
}

/* ---------------------------------------------------------------- */
/* Checkpoints                                                       */

bool journal_write_checkpoint(const char *dir, uint64_t lsn, const void *payload, size_t len,
                              struct error *err)
{
    return journal_write_checkpoint_parts(dir, lsn, NULL, 0, payload, len, err);
}

bool journal_write_checkpoint_parts(const char *dir, uint64_t lsn, const void *head_part,
                                    size_t head_len, const void *payload, size_t len,
                                    struct error *err)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/checkpoint.tmp", dir) >= sizeof tmp) {
        error_set(err, "state directory path \"%s\" is too long", dir);
        return false;
    }
    snprintf(path, sizeof path, "%s/checkpoint", dir);

    unsigned char head[CHECKPOINT_HEAD_BYTES], tail[4];
    put_u32(head, CHECKPOINT_MAGIC);
    put_u32(head + 4, CHECKPOINT_VERSION);
    put_u64(head + 8, lsn);
    put_u64(head + 16, (uint64_t)(head_len + len));
    put_u32(tail,
            crc_more(crc_more(crc_more(0, head, sizeof head), head_part, head_len), payload, len));
    struct iovec iov[4] = {{head, sizeof head},
                           {(void *)head_part, head_len},
                           {(void *)payload, len},
                           {tail, sizeof tail}};

    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        error_set(err, "could not create checkpoint \"%s\": %s", tmp, strerror(errno));
        return false;
    }
    if (!pwrite_all(fd, iov, 4, 0)) {
        error_set(err, "could not write checkpoint \"%s\": %s", tmp, strerror(errno));
        goto fail;
    }
    if (fsync(fd) != 0) {
        error_set(err, "could not fsync checkpoint \"%s\": %s", tmp, strerror(errno));
        goto fail;
    }
    int close_rc = close(fd);
    fd = -1;
    if (close_rc != 0) {
        error_set(err, "could not close checkpoint \"%s\": %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        error_set(err, "could not rename checkpoint \"%s\" to \"%s\": %s", tmp, path,
                  strerror(errno));
        goto fail;
    }
    return fsync_dir(dir, err);

fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return false;
}

bool journal_read_checkpoint(const char *dir, bool *found, uint64_t *lsn, void **payload,
                             size_t *len, struct error *err)
{
    *found = false;
    *payload = NULL;
    *len = 0;
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/checkpoint", dir) >= sizeof path) {
        error_set(err, "state directory path \"%s\" is too long", dir);
        return false;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return false;
    *found = true;
    if (fd < 0) {
        error_set(err, "could not open checkpoint \"%s\": %s", path, strerror(errno));
        return false;
    }
    unsigned char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        error_set(err, "could not stat checkpoint \"%s\": %s", path, strerror(errno));
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < CHECKPOINT_FRAME_BYTES || size > SIZE_MAX) {
        error_set(err, "checkpoint \"%s\" is corrupt: size %" PRIu64 " bytes is impossible", path,
                  size);
        goto fail;
    }
    struct reader r = {.fd = fd};
    const unsigned char *p = reader_at(&r, 0, (size_t)size);
    buf = r.buf;
    if (!p) {
        error_set(err, "could not read checkpoint \"%s\": %s", path, read_error());
        goto fail;
    }
    uint64_t payload_len = get_u64(p + 16);
    uint32_t stored = get_u32(p + size - 4);
    uint32_t computed = crc_more(0, p, (size_t)size - 4);
    if (get_u32(p) != CHECKPOINT_MAGIC) {
        error_set(err, "checkpoint \"%s\" is corrupt: bad magic number 0x%08" PRIx32, path,
                  get_u32(p));
        goto fail;
    }
    if (get_u32(p + 4) != CHECKPOINT_VERSION) {
        error_set(err, "checkpoint \"%s\" has version %" PRIu32 ", expected %u", path,
                  get_u32(p + 4), CHECKPOINT_VERSION);
        goto fail;
    }
    if (payload_len != size - CHECKPOINT_FRAME_BYTES) {
        error_set(err,
                  "checkpoint \"%s\" is corrupt: payload length %" PRIu64
                  " but the file holds %" PRIu64 " bytes of payload",
                  path, payload_len, size - CHECKPOINT_FRAME_BYTES);
        goto fail;
    }
    if (stored != computed) {
        error_set(err,
                  "checkpoint \"%s\" is corrupt: crc32 mismatch (stored 0x%08" PRIx32
                  ", computed 0x%08" PRIx32 ")",
                  path, stored, computed);
        goto fail;
    }
    *lsn = get_u64(p + 8);
    *len = (size_t)payload_len;
    memmove(buf, p + CHECKPOINT_HEAD_BYTES, *len);
    unsigned char *shrunk = realloc(buf, *len ? *len : 1);
    *payload = shrunk ? shrunk : buf;
    close(fd);
    return true;

fail:
    free(buf);
    close(fd);
    return false;
}
