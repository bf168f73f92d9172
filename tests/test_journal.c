/*
 * Unit tests for the journal: records across segment rotations, reopening,
 * torn and corrupt tails, corruption in old segments, trimming, checkpoints
 * and a failed append. Each test works in a fresh directory under /tmp.
 *
 * Record i has type 1 + i % 255 and a payload of (i * 37) % 301 bytes
 * (record 0 is empty), so its size on disk is 9 + that; the LSN after it is
 * the sum of those sizes up to and including it.
 */
#include "storage/journal.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_RECORDS 1024
#define HDR         JOURNAL_RECORD_HEADER_BYTES

static char dir[64];
static uint64_t lsns[MAX_RECORDS]; /* lsns[i]: the LSN append returned for record i */

static void make_dir(void)
{
    strcpy(dir, "/tmp/test_journal-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_dir(void)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---------------------------------------------------------------- */
/* Records and files                                                 */

static uint8_t type_of(size_t i)
{
    return (uint8_t)(1 + i % 255);
}

static size_t payload_of(size_t i, unsigned char *buf)
{
    size_t len = (i * 37) % 301;
    for (size_t k = 0; k < len; k++)
        buf[k] = (unsigned char)(i * 31 + k * 7);
    return len;
}

static uint64_t size_of(size_t i)
{
    return HDR + (i * 37) % 301;
}

static struct journal *open_ok(uint64_t segment_bytes, uint64_t *cut_at)
{
    struct error err = {{0}};
    struct journal *j = journal_open(dir, segment_bytes, cut_at, &err);
    ck_assert_msg(j != NULL, "journal_open: %s", err.msg);
    return j;
}

/* Appends records first..first+n-1 and checks each LSN: the previous end
 * plus the record's size. */
static void append_records(struct journal *j, size_t first, size_t n)
{
    unsigned char buf[512];
    for (size_t i = first; i < first + n; i++) {
        struct error err = {{0}};
        uint64_t before = journal_end(j);
        size_t len = payload_of(i, buf);
        ck_assert_msg(journal_append(j, type_of(i), buf, len, &lsns[i], &err), "append %zu: %s", i,
                      err.msg);
        ck_assert_uint_eq(lsns[i], before + HDR + len);
        ck_assert_uint_eq(journal_end(j), lsns[i]);
    }
}

struct expect {
    size_t next;       /* index of the record replay should give next */
    size_t seen;       /* records given so far */
    size_t stop_after; /* return false after this many (0: never) */
};

static bool check_record(void *ctx, uint8_t type, const void *payload, size_t len,
                         uint64_t lsn_after)
{
    struct expect *e = ctx;
    unsigned char want[512];
    size_t i = e->next;
    size_t want_len = payload_of(i, want);
    ck_assert_uint_eq(type, type_of(i));
    ck_assert_uint_eq(len, want_len);
    ck_assert(len == 0 || memcmp(payload, want, len) == 0);
    ck_assert_uint_eq(lsn_after, lsns[i]);
    e->next++;
    e->seen++;
    return e->stop_after == 0 || e->seen < e->stop_after;
}

/* Replays from from_lsn, expecting records first..first+n-1. */
static void replay_expect(struct journal *j, uint64_t from_lsn, size_t first, size_t n)
{
    struct expect e = {.next = first};
    struct error err = {{0}};
    ck_assert_msg(journal_replay(j, from_lsn, check_record, &e, &err), "replay: %s", err.msg);
    ck_assert_uint_eq(e.seen, n);
}

static void replay_fails(struct journal *j, uint64_t from_lsn, struct error *err)
{
    struct expect e = {.next = 0};
    ck_assert(!journal_replay(j, from_lsn, check_record, &e, err));
    ck_assert_str_ne(err->msg, "");
}

static void segment_path(uint64_t start_lsn, char *path)
{
    sprintf(path, "%s/journal/%016" PRIx64 ".seg", dir, start_lsn);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Start LSNs of the segment files present, in order; returns how many. */
static size_t list_segments(uint64_t *starts, size_t max)
{
    char path[128];
    sprintf(path, "%s/journal", dir);
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".seg")) {
            ck_assert_uint_lt(n, max);
            starts[n++] = strtoull(e->d_name, NULL, 16);
        }
    closedir(d);
    qsort(starts, n, sizeof *starts, compare_u64);
    return n;
}

static uint64_t last_segment_start(void)
{
    uint64_t starts[MAX_RECORDS];
    size_t n = list_segments(starts, MAX_RECORDS);
    ck_assert_uint_gt(n, 0);
    return starts[n - 1];
}

/* The start of the segment holding lsn. */
static uint64_t segment_holding(uint64_t lsn)
{
    uint64_t starts[MAX_RECORDS];
    size_t n = list_segments(starts, MAX_RECORDS);
    while (n > 0 && starts[n - 1] > lsn)
        n--;
    ck_assert_uint_gt(n, 0);
    return starts[n - 1];
}

static void truncate_to(const char *path, uint64_t size)
{
    ck_assert_int_eq(truncate(path, (off_t)size), 0);
}

static void flip_byte(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    unsigned char c;
    ck_assert_int_eq(pread(fd, &c, 1, (off_t)off), 1);
    c ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &c, 1, (off_t)off), 1);
    close(fd);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void append_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* ---------------------------------------------------------------- */
/* Appending and replaying                                           */

START_TEST(test_round_trip_across_many_segment_rotations)
{
    /* 600 records of 9..309 bytes (about 95 kB) in 1 kB segments. */
    struct journal *j = open_ok(1024, NULL);
    ck_assert_uint_eq(journal_end(j), 0);
    for (size_t k = 0; k < 6; k++) {
        append_records(j, k * 100, 100);
        struct error err = {{0}};
        ck_assert_msg(journal_sync(j, &err), "%s", err.msg);
    }
    replay_expect(j, 0, 0, 600);

    uint64_t starts[MAX_RECORDS];
    size_t n = list_segments(starts, MAX_RECORDS);
    ck_assert_uint_gt(n, 90);
    /* Contiguous, none above 1024 bytes, and no record split: every
     * segment starts where a record ended. */
    for (size_t s = 0; s < n; s++) {
        char path[128];
        segment_path(starts[s], path);
        uint64_t size = file_size(path);
        ck_assert_uint_le(size, 1024);
        ck_assert_uint_eq(starts[s] + size, s + 1 < n ? starts[s + 1] : lsns[599]);
        bool boundary = starts[s] == 0;
        for (size_t i = 0; i < 600 && !boundary; i++)
            boundary = lsns[i] == starts[s];
        ck_assert(boundary);
    }
    ck_assert_uint_eq(journal_start(j), 0);
    ck_assert_uint_eq(journal_bytes(j), lsns[599]);
    journal_close(j);
}
END_TEST

START_TEST(test_record_larger_than_a_segment_gets_a_segment_of_its_own)
{
    /* Segments of 100 bytes: 9+10, then 9+500 alone, then 9+10. */
    struct journal *j = open_ok(100, NULL);
    static unsigned char big[500], small[10];
    struct error err = {{0}};
    uint64_t lsn;
    ck_assert(journal_append(j, 1, small, sizeof small, &lsn, &err));
    ck_assert_uint_eq(lsn, 19);
    ck_assert(journal_append(j, 2, big, sizeof big, &lsn, &err));
    ck_assert_uint_eq(lsn, 528);
    ck_assert(journal_append(j, 3, small, sizeof small, &lsn, &err));
    ck_assert_uint_eq(lsn, 547);

    uint64_t starts[8];
    ck_assert_uint_eq(list_segments(starts, 8), 3);
    ck_assert_uint_eq(starts[0], 0);
    ck_assert_uint_eq(starts[1], 19);
    ck_assert_uint_eq(starts[2], 528);
    journal_close(j);
}
END_TEST

START_TEST(test_segment_filled_to_exactly_its_size_rotates_on_the_next_record)
{
    /* Segments of 100 bytes: two records of 9+41 fill the first exactly. */
    struct journal *j = open_ok(100, NULL);
    static unsigned char payload[41];
    struct error err = {{0}};
    uint64_t lsn;
    for (int k = 0; k < 3; k++)
        ck_assert(journal_append(j, 1, payload, sizeof payload, &lsn, &err));
    ck_assert_uint_eq(lsn, 150);
    uint64_t starts[8];
    ck_assert_uint_eq(list_segments(starts, 8), 2);
    ck_assert_uint_eq(starts[1], 100);
    journal_close(j);
}
END_TEST

START_TEST(test_empty_payloads_round_trip)
{
    struct journal *j = open_ok(1 << 20, NULL);
    struct error err = {{0}};
    uint64_t lsn;
    ck_assert(journal_append(j, 7, NULL, 0, &lsn, &err));
    ck_assert_uint_eq(lsn, 9);
    ck_assert(journal_append(j, 8, "", 0, &lsn, &err));
    ck_assert_uint_eq(lsn, 18);
    journal_close(j);

    uint64_t cut_at;
    j = open_ok(1 << 20, &cut_at);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    ck_assert_uint_eq(journal_end(j), 18);
    journal_close(j);
}
END_TEST

START_TEST(test_reopen_finds_the_end_and_appends_continue)
{
    struct journal *j = open_ok(2048, NULL);
    append_records(j, 0, 200);
    journal_close(j);

    uint64_t cut_at;
    j = open_ok(2048, &cut_at);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    ck_assert_uint_eq(journal_end(j), lsns[199]);
    ck_assert_uint_eq(journal_bytes(j), lsns[199]);
    append_records(j, 200, 100);
    replay_expect(j, 0, 0, 300);
    journal_close(j);

    /* Another segment size next time only changes where rotation happens. */
    j = open_ok(1 << 20, &cut_at);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    append_records(j, 300, 10);
    replay_expect(j, 0, 0, 310);
    journal_close(j);
}
END_TEST

START_TEST(test_appends_are_readable_by_replay_before_any_sync)
{
    struct journal *j = open_ok(4096, NULL);
    append_records(j, 0, 50);
    replay_expect(j, 0, 0, 50);
    append_records(j, 50, 50);
    replay_expect(j, lsns[49], 50, 50);
    journal_close(j);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Torn and corrupt tails                                            */

/* 100 records in 4 kB segments, closed; returns the file of the last one.
 * Record 99 has 99 * 37 % 301 = 51 payload bytes, and starts at lsns[98]. */
static void write_hundred(char *last_path)
{
    struct journal *j = open_ok(4096, NULL);
    append_records(j, 0, 100);
    journal_close(j);
    ck_assert_uint_eq(size_of(99), 60);
    segment_path(segment_holding(lsns[98]), last_path);
    ck_assert_uint_eq(last_segment_start(), segment_holding(lsns[98]));
}

/* Reopens after damage at record 99 and checks the cut: exactly at its
 * start, replay gives records 0..98, and the next append lands there. */
static void expect_cut_at_record_99(const char *last_path)
{
    uint64_t cut_at;
    struct journal *j = open_ok(4096, &cut_at);
    ck_assert_uint_eq(cut_at, lsns[98]);
    ck_assert_uint_eq(journal_end(j), lsns[98]);
    ck_assert_uint_eq(file_size(last_path), lsns[98] - last_segment_start());
    replay_expect(j, 0, 0, 99);

    char where[256];
    journal_describe_lsn(j, cut_at, where, sizeof where);
    char want[256];
    sprintf(want, "offset %" PRIu64 " of \"%s\"", lsns[98] - last_segment_start(), last_path);
    ck_assert_str_eq(where, want);

    append_records(j, 99, 5);
    ck_assert_uint_eq(lsns[99], cut_at + size_of(99));
    journal_close(j);

    j = open_ok(4096, &cut_at);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    replay_expect(j, 0, 0, 104);
    journal_close(j);
}

START_TEST(test_tail_torn_mid_payload_is_cut_at_the_record_start)
{
    char last[128];
    write_hundred(last);
    /* Keep record 99's header and 3 of its 51 payload bytes. */
    truncate_to(last, lsns[98] - last_segment_start() + HDR + 3);
    expect_cut_at_record_99(last);
}
END_TEST

START_TEST(test_tail_torn_mid_header_is_cut_at_the_record_start)
{
    char last[128];
    write_hundred(last);
    /* Keep 4 of record 99's 9 header bytes. */
    truncate_to(last, lsns[98] - last_segment_start() + 4);
    expect_cut_at_record_99(last);
}
END_TEST

START_TEST(test_flipped_payload_byte_in_the_last_record_is_cut)
{
    char last[128];
    write_hundred(last);
    flip_byte(last, lsns[98] - last_segment_start() + HDR + 20);
    expect_cut_at_record_99(last);
}
END_TEST

START_TEST(test_flipped_length_byte_in_the_last_record_is_cut)
{
    char last[128];
    write_hundred(last);
    /* 51 ^ 0x40 = 115 bytes: beyond the end of the file. */
    flip_byte(last, lsns[98] - last_segment_start());
    expect_cut_at_record_99(last);
}
END_TEST

START_TEST(test_tail_torn_in_the_last_payload_byte_is_cut)
{
    char last[128];
    write_hundred(last);
    truncate_to(last, lsns[99] - last_segment_start() - 1);
    expect_cut_at_record_99(last);
}
END_TEST

START_TEST(test_flipped_type_byte_in_the_last_record_is_cut)
{
    /* The CRC covers the type as well as the payload. */
    char last[128];
    write_hundred(last);
    flip_byte(last, lsns[98] - last_segment_start() + 8);
    expect_cut_at_record_99(last);
}
END_TEST

START_TEST(test_type_zero_record_is_cut_even_with_a_good_crc)
{
    char last[128];
    write_hundred(last);
    unsigned char rec[HDR + 3] = {3, 0, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c'};
    uint32_t crc = (uint32_t)crc32(crc32(0, rec + 8, 1), rec + HDR, 3);
    for (int k = 0; k < 4; k++)
        rec[4 + k] = (unsigned char)(crc >> (8 * k));
    append_file(last, rec, sizeof rec);
    uint64_t cut_at;
    struct journal *j = open_ok(4096, &cut_at);
    ck_assert_uint_eq(cut_at, lsns[99]);
    replay_expect(j, 0, 0, 100);
    journal_close(j);
}
END_TEST

START_TEST(test_zero_filled_tail_is_cut)
{
    /* What a filesystem can leave after a power loss: the size grew, the
     * data did not arrive. A zero header has type 0 and a CRC of 0. */
    char last[128];
    write_hundred(last);
    truncate_to(last, lsns[98] - last_segment_start());
    static const unsigned char zeros[4096];
    append_file(last, zeros, sizeof zeros);
    expect_cut_at_record_99(last);
}
END_TEST

START_TEST(test_only_the_tail_after_the_first_bad_record_is_cut)
{
    /* Damage in record 98 cuts 98 and 99 even though 99 is intact. */
    char last[128];
    write_hundred(last);
    ck_assert_uint_eq(segment_holding(lsns[97]), last_segment_start());
    flip_byte(last, lsns[97] - last_segment_start() + 4);
    uint64_t cut_at;
    struct journal *j = open_ok(4096, &cut_at);
    ck_assert_uint_eq(cut_at, lsns[97]);
    replay_expect(j, 0, 0, 98);
    journal_close(j);
}
END_TEST

START_TEST(test_corrupt_record_in_an_older_segment_fails_replay)
{
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 300);
    journal_close(j);
    /* Record 2 (74 bytes of payload) lies in the first segment at offset
     * lsns[1] = 9 + 46 = 55. */
    ck_assert_uint_eq(lsns[1], 55);
    char first[128];
    segment_path(0, first);
    flip_byte(first, lsns[1] + HDR + 10);

    uint64_t cut_at;
    j = open_ok(1024, &cut_at);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    struct error err = {{0}};
    replay_fails(j, 0, &err);
    char want[256];
    sprintf(want, "journal segment \"%s\" at offset 55: crc32 mismatch", first);
    ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "got: %s", err.msg);

    /* From the second segment on, the journal is fine. */
    uint64_t starts[MAX_RECORDS];
    list_segments(starts, MAX_RECORDS);
    size_t k = 0;
    while (lsns[k] != starts[1])
        k++;
    replay_expect(j, starts[1], k + 1, 299 - k);
    journal_close(j);
}
END_TEST

START_TEST(test_missing_segment_in_the_middle_fails_replay)
{
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 300);
    journal_close(j);
    uint64_t starts[MAX_RECORDS];
    size_t n = list_segments(starts, MAX_RECORDS);
    ck_assert_uint_gt(n, 4);
    char gone[128];
    segment_path(starts[2], gone);
    ck_assert_int_eq(unlink(gone), 0);

    j = open_ok(1024, NULL);
    struct error err = {{0}};
    replay_fails(j, 0, &err);
    char first_path[128], want[512];
    segment_path(starts[1], first_path);
    sprintf(want,
            "journal segment \"%s\" ends at LSN %" PRIu64
            " but the next segment starts at LSN %" PRIu64,
            first_path, starts[2], starts[3]);
    ck_assert_str_eq(err.msg, want);
    journal_close(j);
}
END_TEST

/* ---------------------------------------------------------------- */
/* What journal_open finds                                           */

START_TEST(test_missing_state_directory_is_created)
{
    char state[128], seg[160];
    sprintf(state, "%s/state", dir);
    sprintf(seg, "%s/journal/0000000000000000.seg", state);
    struct error err = {{0}};
    uint64_t cut_at;
    struct journal *j = journal_open(state, 4096, &cut_at, &err);
    ck_assert_msg(j != NULL, "%s", err.msg);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    ck_assert_uint_eq(journal_end(j), 0);
    ck_assert_uint_eq(journal_bytes(j), 0);
    ck_assert(file_exists(seg));
    journal_close(j);
}
END_TEST

START_TEST(test_state_directory_under_a_missing_parent_is_an_error)
{
    char state[128];
    sprintf(state, "%s/no/state", dir);
    struct error err = {{0}};
    ck_assert_ptr_null(journal_open(state, 4096, NULL, &err));
    char want[256];
    sprintf(want, "could not create directory \"%s\": No such file or directory", state);
    ck_assert_str_eq(err.msg, want);
}
END_TEST

START_TEST(test_empty_journal_directory_starts_at_zero)
{
    char jdir[128];
    sprintf(jdir, "%s/journal", dir);
    ck_assert_int_eq(mkdir(jdir, 0700), 0);
    struct journal *j = open_ok(4096, NULL);
    ck_assert_uint_eq(journal_end(j), 0);
    append_records(j, 0, 3);
    replay_expect(j, 0, 0, 3);
    journal_close(j);
}
END_TEST

START_TEST(test_empty_segment_file_is_where_the_journal_ends)
{
    /* A journal whose older segments were trimmed and whose last one was
     * created just before a crash. */
    char jdir[128], seg[160];
    sprintf(jdir, "%s/journal", dir);
    ck_assert_int_eq(mkdir(jdir, 0700), 0);
    segment_path(0x1000, seg);
    write_file(seg, "", 0);
    uint64_t cut_at;
    struct journal *j = open_ok(4096, &cut_at);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    ck_assert_uint_eq(journal_start(j), 0x1000);
    ck_assert_uint_eq(journal_end(j), 0x1000);
    struct error err = {{0}};
    uint64_t lsn;
    ck_assert(journal_append(j, 1, "abc", 3, &lsn, &err));
    ck_assert_uint_eq(lsn, 0x1000 + 12);
    journal_close(j);
}
END_TEST

START_TEST(test_crash_right_after_rotation_leaves_an_empty_last_segment)
{
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 100);
    journal_close(j);
    /* The new segment exists, the record meant for it never arrived. */
    char seg[128];
    segment_path(lsns[99], seg);
    write_file(seg, "", 0);

    uint64_t cut_at;
    j = open_ok(1024, &cut_at);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    ck_assert_uint_eq(journal_end(j), lsns[99]);
    append_records(j, 100, 20);
    replay_expect(j, 0, 0, 120);
    journal_close(j);
}
END_TEST

START_TEST(test_segment_of_nothing_but_garbage_is_cut_to_empty)
{
    char jdir[128], seg[160];
    sprintf(jdir, "%s/journal", dir);
    ck_assert_int_eq(mkdir(jdir, 0700), 0);
    segment_path(0, seg);
    unsigned char garbage[1000];
    for (size_t k = 0; k < sizeof garbage; k++)
        garbage[k] = (unsigned char)(k * 151 + 7);
    write_file(seg, garbage, sizeof garbage);

    uint64_t cut_at;
    struct journal *j = open_ok(4096, &cut_at);
    ck_assert_uint_eq(cut_at, 0);
    ck_assert_uint_eq(journal_end(j), 0);
    ck_assert_uint_eq(file_size(seg), 0);
    replay_expect(j, 0, 0, 0);
    append_records(j, 0, 3);
    replay_expect(j, 0, 0, 3);
    journal_close(j);
}
END_TEST

START_TEST(test_other_files_in_the_journal_directory_are_ignored)
{
    struct journal *j = open_ok(4096, NULL);
    append_records(j, 0, 10);
    journal_close(j);
    char path[128];
    sprintf(path, "%s/journal/README", dir);
    write_file(path, "x", 1);
    sprintf(path, "%s/journal/00000000000000zz.seg", dir);
    write_file(path, "x", 1);
    sprintf(path, "%s/journal/0000000000000000.seg.bak", dir);
    write_file(path, "x", 1);

    uint64_t cut_at;
    j = open_ok(4096, &cut_at);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    ck_assert_uint_eq(journal_end(j), lsns[9]);
    replay_expect(j, 0, 0, 10);
    journal_close(j);
}
END_TEST

START_TEST(test_second_open_is_refused_while_the_first_is_open)
{
    struct journal *j = open_ok(4096, NULL);
    struct error err = {{0}};
    ck_assert_ptr_null(journal_open(dir, 4096, NULL, &err));
    char want[256];
    sprintf(want, "could not lock journal \"%s/journal\": it is in use by another tariffd", dir);
    ck_assert_str_eq(err.msg, want);
    journal_close(j);
    j = open_ok(4096, NULL);
    journal_close(j);
}
END_TEST

START_TEST(test_zero_segment_size_is_refused)
{
    struct error err = {{0}};
    ck_assert_ptr_null(journal_open(dir, 0, NULL, &err));
    ck_assert_str_eq(err.msg, "journal segment size must be positive");
}
END_TEST

/* ---------------------------------------------------------------- */
/* Replay positions                                                  */

START_TEST(test_replay_from_a_record_boundary_gives_the_records_after_it)
{
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 200);
    replay_expect(j, lsns[0], 1, 199);
    replay_expect(j, lsns[123], 124, 76);
    replay_expect(j, lsns[198], 199, 1);
    journal_close(j);
}
END_TEST

START_TEST(test_replay_from_the_end_gives_nothing)
{
    struct journal *j = open_ok(1024, NULL);
    replay_expect(j, 0, 0, 0);
    append_records(j, 0, 50);
    replay_expect(j, lsns[49], 50, 0);
    journal_close(j);
}
END_TEST

START_TEST(test_replay_from_inside_a_record_fails)
{
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 50);
    struct error err = {{0}};
    replay_fails(j, lsns[20] + 1, &err);
    ck_assert_msg(strstr(err.msg, "is not a record boundary") != NULL, "got: %s", err.msg);
    journal_close(j);
}
END_TEST

START_TEST(test_replay_from_beyond_the_end_fails)
{
    /* A checkpoint ahead of the journal: the journal was lost or replaced. */
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 5);
    struct error err = {{0}};
    replay_fails(j, lsns[4] + 1, &err);
    char want[256];
    sprintf(want,
            "replay start LSN %" PRIu64 " is beyond the end of journal \"%s/journal\" (LSN %" PRIu64
            ")",
            lsns[4] + 1, dir, lsns[4]);
    ck_assert_str_eq(err.msg, want);
    journal_close(j);
}
END_TEST

START_TEST(test_replay_stops_when_the_callback_says_so)
{
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 50);
    struct expect e = {.next = 0, .stop_after = 5};
    struct error err = {{0}};
    strcpy(err.msg, "stale");
    ck_assert(!journal_replay(j, 0, check_record, &e, &err));
    ck_assert_uint_eq(e.seen, 5);
    ck_assert_str_eq(err.msg, "");
    journal_close(j);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Trimming                                                          */

START_TEST(test_trim_deletes_only_whole_segments_before_the_lsn)
{
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 300);
    uint64_t before[MAX_RECORDS];
    size_t n_before = list_segments(before, MAX_RECORDS);

    /* Trim at a boundary inside the fifth segment: the four before it go,
     * the fifth stays since records after the LSN live in it. */
    size_t k = 0;
    while (lsns[k] <= before[4])
        k++;
    ck_assert_uint_lt(lsns[k], before[5]);
    struct error err = {{0}};
    ck_assert_msg(journal_trim(j, lsns[k], &err), "%s", err.msg);
    uint64_t after[MAX_RECORDS];
    size_t n_after = list_segments(after, MAX_RECORDS);
    ck_assert_uint_eq(n_after, n_before - 4);
    ck_assert_uint_eq(after[0], before[4]);
    ck_assert_uint_eq(journal_start(j), before[4]);
    ck_assert_uint_eq(journal_bytes(j), lsns[299] - before[4]);
    replay_expect(j, lsns[k], k + 1, 299 - k);

    /* Trim at a segment's exact end deletes it too. */
    ck_assert(journal_trim(j, before[5], &err));
    ck_assert_uint_eq(journal_start(j), before[5]);
    ck_assert_uint_eq(list_segments(after, MAX_RECORDS), n_before - 5);
    journal_close(j);

    /* And it stays that way after reopening. */
    j = open_ok(1024, NULL);
    ck_assert_uint_eq(journal_start(j), before[5]);
    ck_assert_uint_eq(journal_bytes(j), lsns[299] - before[5]);
    journal_close(j);
}
END_TEST

START_TEST(test_trim_never_deletes_the_current_segment)
{
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 300);
    uint64_t last = last_segment_start();
    struct error err = {{0}};
    ck_assert(journal_trim(j, UINT64_MAX, &err));
    uint64_t starts[4];
    ck_assert_uint_eq(list_segments(starts, 4), 1);
    ck_assert_uint_eq(starts[0], last);
    ck_assert_uint_eq(journal_bytes(j), lsns[299] - last);
    append_records(j, 300, 20);
    ck_assert_uint_eq(journal_bytes(j), lsns[319] - last);
    journal_close(j);
}
END_TEST

START_TEST(test_replay_from_a_trimmed_lsn_starts_at_the_oldest_segment_present)
{
    /* A checkpoint naming a deleted segment: the caller can tell, since its
     * LSN is below journal_start(). */
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 300);
    uint64_t starts[MAX_RECORDS];
    list_segments(starts, MAX_RECORDS);
    struct error err = {{0}};
    ck_assert(journal_trim(j, starts[3], &err));
    ck_assert_uint_eq(journal_start(j), starts[3]);
    size_t k = 0;
    while (lsns[k] != starts[3])
        k++;
    replay_expect(j, lsns[2], k + 1, 299 - k);
    replay_expect(j, 0, k + 1, 299 - k);

    char where[256], want[256];
    journal_describe_lsn(j, lsns[2], where, sizeof where);
    sprintf(want, "LSN %" PRIu64 " (before the oldest segment \"%s/journal/%016" PRIx64 ".seg\")",
            lsns[2], dir, starts[3]);
    ck_assert_str_eq(where, want);
    journal_close(j);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Failed appends                                                    */

START_TEST(test_failed_append_leaves_nothing_partial)
{
    /* RLIMIT_FSIZE lets the kernel write the first 20 bytes of the 309-byte
     * record (a short write) and refuse the rest with EFBIG, as a full disk
     * would with ENOSPC. */
    struct journal *j = open_ok(1 << 20, NULL);
    append_records(j, 0, 8);
    char seg[128];
    segment_path(0, seg);
    uint64_t end = journal_end(j);
    ck_assert_uint_eq(file_size(seg), end);

    struct rlimit saved, tight;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    tight = saved;
    tight.rlim_cur = end + 20;
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &tight), 0);
    unsigned char big[300] = {0};
    struct error err = {{0}};
    uint64_t lsn = 12345;
    bool ok = journal_append(j, 9, big, sizeof big, &lsn, &err);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);

    ck_assert(!ok);
    char want[256];
    sprintf(want, "could not write journal record at offset %" PRIu64 " of \"%s\": File too large",
            end, seg);
    ck_assert_str_eq(err.msg, want);
    ck_assert_uint_eq(lsn, 12345);
    ck_assert_uint_eq(file_size(seg), end);
    ck_assert_uint_eq(journal_end(j), end);
    ck_assert_uint_eq(journal_bytes(j), end);

    /* The journal goes on where it was. */
    append_records(j, 8, 5);
    ck_assert_uint_eq(lsns[8], end + size_of(8));
    replay_expect(j, 0, 0, 13);
    journal_close(j);

    uint64_t cut_at;
    j = open_ok(1 << 20, &cut_at);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    replay_expect(j, 0, 0, 13);
    journal_close(j);
}
END_TEST

START_TEST(test_append_refuses_type_zero_and_oversized_payloads)
{
    struct journal *j = open_ok(1 << 20, NULL);
    struct error err = {{0}};
    ck_assert(!journal_append(j, 0, "x", 1, NULL, &err));
    ck_assert_str_eq(err.msg, "journal record type 0 is reserved");
    ck_assert(!journal_append(j, 1, "x", JOURNAL_MAX_PAYLOAD + 1, NULL, &err));
    ck_assert_str_eq(err.msg, "journal record of 67108865 bytes exceeds the maximum 67108864");
    ck_assert_uint_eq(journal_end(j), 0);
    journal_close(j);
}
END_TEST

START_TEST(test_largest_payload_round_trips)
{
    struct journal *j = open_ok(1 << 20, NULL);
    unsigned char *big = malloc(JOURNAL_MAX_PAYLOAD);
    ck_assert_ptr_nonnull(big);
    for (size_t k = 0; k < JOURNAL_MAX_PAYLOAD; k++)
        big[k] = (unsigned char)(k * 13);
    struct error err = {{0}};
    uint64_t lsn;
    ck_assert(journal_append(j, 200, "a", 1, &lsn, &err));
    ck_assert(journal_append(j, 201, big, JOURNAL_MAX_PAYLOAD, &lsn, &err));
    ck_assert_uint_eq(lsn, 10 + HDR + JOURNAL_MAX_PAYLOAD);
    free(big);
    journal_close(j);

    /* It is alone in its segment, which is the last: open reads it all. */
    uint64_t cut_at;
    j = open_ok(1 << 20, &cut_at);
    ck_assert_uint_eq(cut_at, JOURNAL_NOTHING_CUT);
    ck_assert_uint_eq(journal_end(j), lsn);
    journal_close(j);
}
END_TEST

/* ---------------------------------------------------------------- */
/* Checkpoints                                                       */

static void read_checkpoint_ok(uint64_t want_lsn, const void *want, size_t want_len)
{
    bool found = false;
    uint64_t lsn = 0;
    void *payload = NULL;
    size_t len = 0;
    struct error err = {{0}};
    ck_assert_msg(journal_read_checkpoint(dir, &found, &lsn, &payload, &len, &err), "%s", err.msg);
    ck_assert(found);
    ck_assert_uint_eq(lsn, want_lsn);
    ck_assert_uint_eq(len, want_len);
    ck_assert_ptr_nonnull(payload);
    ck_assert(len == 0 || memcmp(payload, want, len) == 0);
    free(payload);
}

static void read_checkpoint_fails(const char *want_prefix)
{
    bool found = false;
    uint64_t lsn = 0;
    void *payload = NULL;
    size_t len = 0;
    struct error err = {{0}};
    ck_assert(!journal_read_checkpoint(dir, &found, &lsn, &payload, &len, &err));
    ck_assert(found);
    ck_assert_ptr_null(payload);
    char want[256];
    sprintf(want, want_prefix, dir);
    ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "got: %s", err.msg);
}

START_TEST(test_checkpoint_round_trip_and_replacement)
{
    struct error err = {{0}};
    ck_assert(journal_write_checkpoint(dir, 4242, "engine state", 12, &err));
    read_checkpoint_ok(4242, "engine state", 12);
    ck_assert(journal_write_checkpoint(dir, 9000, "newer", 5, &err));
    read_checkpoint_ok(9000, "newer", 5);
    ck_assert(journal_write_checkpoint(dir, 9001, NULL, 0, &err));
    read_checkpoint_ok(9001, NULL, 0);

    char path[128];
    sprintf(path, "%s/checkpoint", dir);
    ck_assert_uint_eq(file_size(path), 28);
    sprintf(path, "%s/checkpoint.tmp", dir);
    ck_assert(!file_exists(path));
}
END_TEST

/* The daemon writes its config record and the engine state as two parts:
 * the file is the one a single payload of both makes, CRC included. */
START_TEST(test_checkpoint_in_parts_reads_back_as_one_payload)
{
    struct error err = {{0}};
    ck_assert(journal_write_checkpoint_parts(dir, 77, "config:", 7, "engine state", 12, &err));
    read_checkpoint_ok(77, "config:engine state", 19);
    ck_assert(journal_write_checkpoint_parts(dir, 78, NULL, 0, "engine state", 12, &err));
    read_checkpoint_ok(78, "engine state", 12);
}
END_TEST

START_TEST(test_missing_checkpoint_is_not_found)
{
    bool found = true;
    uint64_t lsn = 0;
    void *payload = NULL;
    size_t len = 0;
    struct error err = {{0}};
    ck_assert(!journal_read_checkpoint(dir, &found, &lsn, &payload, &len, &err));
    ck_assert(!found);
    ck_assert_str_eq(err.msg, "");
}
END_TEST

START_TEST(test_corrupt_checkpoint_is_an_error)
{
    struct error err = {{0}};
    char path[128];
    sprintf(path, "%s/checkpoint", dir);

    ck_assert(journal_write_checkpoint(dir, 77, "0123456789", 10, &err));
    flip_byte(path, 24 + 3); /* a payload byte */
    read_checkpoint_fails("checkpoint \"%s/checkpoint\" is corrupt: crc32 mismatch");

    ck_assert(journal_write_checkpoint(dir, 77, "0123456789", 10, &err));
    flip_byte(path, 8); /* the LSN */
    read_checkpoint_fails("checkpoint \"%s/checkpoint\" is corrupt: crc32 mismatch");

    ck_assert(journal_write_checkpoint(dir, 77, "0123456789", 10, &err));
    truncate_to(path, 30);
    read_checkpoint_fails("checkpoint \"%s/checkpoint\" is corrupt: payload length 10 but the "
                          "file holds 2 bytes of payload");

    truncate_to(path, 27);
    read_checkpoint_fails("checkpoint \"%s/checkpoint\" is corrupt: size 27 bytes is impossible");

    write_file(path, "this is not a checkpoint at all", 31);
    read_checkpoint_fails("checkpoint \"%s/checkpoint\" is corrupt: bad magic number");
}
END_TEST

START_TEST(test_checkpoint_tmp_left_by_a_crash_is_ignored)
{
    struct error err = {{0}};
    ck_assert(journal_write_checkpoint(dir, 100, "old", 3, &err));
    /* A crash after writing the temp file, before the rename. */
    char tmp[128];
    sprintf(tmp, "%s/checkpoint.tmp", dir);
    write_file(tmp, "half a checkp", 13);
    read_checkpoint_ok(100, "old", 3);
    /* The next checkpoint writes over it. */
    ck_assert(journal_write_checkpoint(dir, 200, "new", 3, &err));
    read_checkpoint_ok(200, "new", 3);
    ck_assert(!file_exists(tmp));
}
END_TEST

START_TEST(test_checkpoint_and_journal_restart_together)
{
    /* The daemon's restart: load the checkpoint, replay after its LSN. */
    struct journal *j = open_ok(1024, NULL);
    append_records(j, 0, 120);
    struct error err = {{0}};
    ck_assert(journal_sync(j, &err));
    ck_assert(journal_write_checkpoint(dir, lsns[79], "state@79", 8, &err));
    ck_assert(journal_trim(j, lsns[79], &err));
    append_records(j, 120, 30);
    journal_close(j);

    j = open_ok(1024, NULL);
    bool found;
    uint64_t lsn;
    void *payload;
    size_t len;
    ck_assert(journal_read_checkpoint(dir, &found, &lsn, &payload, &len, &err));
    free(payload);
    ck_assert_uint_ge(lsn, journal_start(j));
    replay_expect(j, lsn, 80, 70);
    journal_close(j);
}
END_TEST

static Suite *journal_suite(void)
{
    Suite *s = suite_create("journal");
    TCase *tc = tcase_create("journal");
    tcase_add_checked_fixture(tc, make_dir, remove_dir);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_round_trip_across_many_segment_rotations);
    tcase_add_test(tc, test_record_larger_than_a_segment_gets_a_segment_of_its_own);
    tcase_add_test(tc, test_segment_filled_to_exactly_its_size_rotates_on_the_next_record);
    tcase_add_test(tc, test_empty_payloads_round_trip);
    tcase_add_test(tc, test_reopen_finds_the_end_and_appends_continue);
    tcase_add_test(tc, test_appends_are_readable_by_replay_before_any_sync);
    tcase_add_test(tc, test_tail_torn_mid_payload_is_cut_at_the_record_start);
    tcase_add_test(tc, test_tail_torn_mid_header_is_cut_at_the_record_start);
    tcase_add_test(tc, test_flipped_payload_byte_in_the_last_record_is_cut);
    tcase_add_test(tc, test_flipped_length_byte_in_the_last_record_is_cut);
    tcase_add_test(tc, test_tail_torn_in_the_last_payload_byte_is_cut);
    tcase_add_test(tc, test_flipped_type_byte_in_the_last_record_is_cut);
    tcase_add_test(tc, test_type_zero_record_is_cut_even_with_a_good_crc);
    tcase_add_test(tc, test_zero_filled_tail_is_cut);
    tcase_add_test(tc, test_only_the_tail_after_the_first_bad_record_is_cut);
    tcase_add_test(tc, test_corrupt_record_in_an_older_segment_fails_replay);
    tcase_add_test(tc, test_missing_segment_in_the_middle_fails_replay);
    tcase_add_test(tc, test_missing_state_directory_is_created);
    tcase_add_test(tc, test_state_directory_under_a_missing_parent_is_an_error);
    tcase_add_test(tc, test_empty_journal_directory_starts_at_zero);
    tcase_add_test(tc, test_empty_segment_file_is_where_the_journal_ends);
    tcase_add_test(tc, test_crash_right_after_rotation_leaves_an_empty_last_segment);
    tcase_add_test(tc, test_segment_of_nothing_but_garbage_is_cut_to_empty);
    tcase_add_test(tc, test_other_files_in_the_journal_directory_are_ignored);
    tcase_add_test(tc, test_second_open_is_refused_while_the_first_is_open);
    tcase_add_test(tc, test_zero_segment_size_is_refused);
    tcase_add_test(tc, test_replay_from_a_record_boundary_gives_the_records_after_it);
    tcase_add_test(tc, test_replay_from_the_end_gives_nothing);
    tcase_add_test(tc, test_replay_from_inside_a_record_fails);
    tcase_add_test(tc, test_replay_from_beyond_the_end_fails);
    tcase_add_test(tc, test_replay_stops_when_the_callback_says_so);
    tcase_add_test(tc, test_trim_deletes_only_whole_segments_before_the_lsn);
    tcase_add_test(tc, test_trim_never_deletes_the_current_segment);
    tcase_add_test(tc, test_replay_from_a_trimmed_lsn_starts_at_the_oldest_segment_present);
    tcase_add_test(tc, test_failed_append_leaves_nothing_partial);
    tcase_add_test(tc, test_append_refuses_type_zero_and_oversized_payloads);
    tcase_add_test(tc, test_largest_payload_round_trips);
    tcase_add_test(tc, test_checkpoint_round_trip_and_replacement);
    tcase_add_test(tc, test_checkpoint_in_parts_reads_back_as_one_payload);
    tcase_add_test(tc, test_missing_checkpoint_is_not_found);
    tcase_add_test(tc, test_corrupt_checkpoint_is_an_error);
    tcase_add_test(tc, test_checkpoint_tmp_left_by_a_crash_is_ignored);
    tcase_add_test(tc, test_checkpoint_and_journal_restart_together);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(journal_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
