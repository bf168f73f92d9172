/*
 * journal: the append-only log of accepted requests, and the checkpoint that
 * says where replay starts (docs/design.md section 6). Plain POSIX file I/O;
 * it knows nothing of the engine, of libevent or of threads.
 *
 * Layout. DIR/journal/ holds segment files named by the LSN (the byte
 * position in the journal as a whole) of their first byte, in 16 lower-case
 * hex digits: "0000000000000000.seg", "0000000000400000.seg", ... Other
 * names in that directory are ignored. A segment holds whole records, back to
 * back, with no header of its own:
 *
 *     u32 length     payload bytes, at most JOURNAL_MAX_PAYLOAD
 *     u32 crc32      zlib crc32 of the type byte followed by the payload
 *     u8  type       1..255 (0 never occurs, so a zero-filled tail is bad)
 *     payload
 *
 * all little-endian. A record never spans two segments; the writer moves to a
 * new segment when the current one would exceed segment_bytes (a record larger
 * than that gets a segment to itself).
 *
 * Invariants:
 * - Segments only grow by appends at the tracked end, and the segments
 *   present are contiguous: each one ends at the LSN the next one is named by.
 * - Every segment except the last is complete and durable: before the writer
 *   creates a new segment it fdatasyncs the old one, and after creating it
 *   fsyncs the directory. So a crash (even a power loss, even with
 *   durability = none) can only damage the tail of the last segment, and that
 *   is all journal_open scans. A bad record anywhere else is corruption, and
 *   journal_replay reports it rather than skip it.
 * - journal_open cuts the last segment at its first bad record (incomplete
 *   header, length beyond the file or above the maximum, type 0, CRC
 *   mismatch). Note that a corrupt record in the middle of the last segment
 *   looks exactly like a torn tail: everything from it on is cut.
 * - After a failed fdatasync/fsync, or a failed append that could not be
 *   rolled back, the journal refuses every further call: what is on disk is
 *   then unknown (a retried fsync can succeed without writing anything), and
 *   the only safe way on is to close, exit and let the restart replay what
 *   the files really hold.
 *
 * Checkpoint: DIR/checkpoint holds, little-endian,
 *
 *     u32 magic "TFCK", u32 version (1), u64 lsn, u64 payload length,
 *     payload, u32 crc32 of every byte before it
 *
 * and is replaced atomically (write DIR/checkpoint.tmp, fsync, rename, fsync
 * DIR). A checkpoint.tmp left by a crash is never read.
 *
 * Concurrency: none. The caller serialises every call on a journal (one
 * thread, or its own lock); journal_open takes an exclusive flock on
 * DIR/journal so a second process (or a second open) fails instead of
 * interleaving writes.
 *
 * Memory: journal_open's journal is freed by journal_close. The payload given
 * to a journal_record_fn is borrowed until it returns. journal_read_checkpoint
 * hands out a malloc'd payload the caller frees.
 *
 * Errors are reported through struct error in PostgreSQL style, with the file
 * and the offset in it.
 */
#ifndef STORAGE_JOURNAL_H
#define STORAGE_JOURNAL_H

#include "tariff/errors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOURNAL_RECORD_HEADER_BYTES 9
#define JOURNAL_MAX_PAYLOAD         (64u << 20)
#define JOURNAL_NOTHING_CUT         UINT64_MAX

struct journal;

/* Opens (creating DIR and DIR/journal if needed) the journal, scans its last
 * segment for the end and cuts a torn or corrupt tail there. *cut_at (may be
 * NULL) receives the LSN where the tail was cut, or JOURNAL_NOTHING_CUT; the
 * caller logs it with journal_describe_lsn. segment_bytes > 0. */
struct journal *journal_open(const char *dir, uint64_t segment_bytes, uint64_t *cut_at,
                             struct error *err);

/* Closes the files and releases the lock; syncs nothing (call journal_sync
 * first if it matters). NULL is a no-op. */
void journal_close(struct journal *j);

/* Appends one record (type 1..255, payload up to JOURNAL_MAX_PAYLOAD) with
 * pwritev at the tracked end, not synced (except that moving to a new segment
 * syncs the old one and the directory, see above). *lsn (may be NULL)
 * receives the LSN just past the record: the position a checkpoint names to
 * start replay after it. On failure nothing of the record remains (the
 * segment is truncated back to where the record started). */
bool journal_append(struct journal *j, uint8_t type, const void *payload, size_t len, uint64_t *lsn,
                    struct error *err);

/* Makes every record appended so far durable (fdatasync of the current
 * segment; older segments and directory entries already are). */
bool journal_sync(struct journal *j, struct error *err);

/* LSN of the end: the next byte to be written. */
uint64_t journal_end(const struct journal *j);

/* LSN of the first byte of the oldest segment still present. */
uint64_t journal_start(const struct journal *j);

/* Total bytes in the segments still present (for the backlog limit). */
uint64_t journal_bytes(const struct journal *j);

/* Calls fn for every record at or after from_lsn, in order, with the LSN just
 * past it. from_lsn must be a record boundary or the end (anything else is an
 * error); 0 means from the oldest segment present. A from_lsn before the
 * oldest segment present (a checkpoint naming a deleted segment) also replays
 * from the oldest segment present: the records in between are gone, and a
 * caller that minds compares from_lsn with journal_start() first. A from_lsn
 * beyond the end is an error (the journal is shorter than the checkpoint
 * says: it was lost or replaced). fn must not call into the journal; it
 * returns false to stop, and journal_replay then returns false with err->msg
 * set to "". A bad record or a gap between segments is an error. */
typedef bool (*journal_record_fn)(void *ctx, uint8_t type, const void *payload, size_t len,
                                  uint64_t lsn_after);
bool journal_replay(struct journal *j, uint64_t from_lsn, journal_record_fn fn, void *ctx,
                    struct error *err);

/* Deletes, oldest first, the segments that end at or before lsn, never the
 * current one. Not synced: a deleted segment that comes back after a power
 * loss lies before every checkpoint and is only trimmed again. */
bool journal_trim(struct journal *j, uint64_t lsn, struct error *err);

/* Writes where lsn lies for a log line: offset N of "DIR/journal/X.seg". */
void journal_describe_lsn(const struct journal *j, uint64_t lsn, char *buf, size_t size);

/* Replaces DIR/checkpoint durably (see above). */
bool journal_write_checkpoint(const char *dir, uint64_t lsn, const void *payload, size_t len,
                              struct error *err);
/* The same with the payload in two parts, head_part then payload, written
 * as one: so a large payload need not be copied behind its header. */
bool journal_write_checkpoint_parts(const char *dir, uint64_t lsn, const void *head_part,
                                    size_t head_len, const void *payload, size_t len,
                                    struct error *err);

/* Reads DIR/checkpoint: false with *found = false when there is none; false
 * with *found = true and err set when it cannot be read or is corrupt; true
 * with *lsn and a malloc'd *payload (never NULL, even when *len is 0)
 * otherwise. */
bool journal_read_checkpoint(const char *dir, bool *found, uint64_t *lsn, void **payload,
                             size_t *len, struct error *err);

#endif
