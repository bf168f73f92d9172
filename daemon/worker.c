/*
 * worker: the worker thread (docs/design.md section 6). It appends the
 * loop's records to the journal, a group at a time with one fsync for all
 * of them (group commit), hands their rows to the ledger writer only once
 * they are durable, and wakes the loop, which answers the group's
 * requests. A checkpoint (the engine's state as of a record) is written
 * once PostgreSQL has committed every row up to that record; only then may
 * the journal before it go.
 */
#include "daemon/log.h"
#include "daemon/server_private.h"
#include "tariff/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void free_jobs(struct job *j)
{
    while (j) {
        struct job *next = j->next;
        worker_free_job(j);
        j = next;
    }
}

/* The journal could not take a record, or could not make records durable
 * (disk full, read-only, an I/O error): their requests are not answered
 * 204, and nothing after them may be journaled either, since the engine
 * applied them. The loop answers 503 and rebuilds the engine from what the
 * journal holds once it can be written again (server.c); until then every
 * job is dropped. */
static void journal_failed(struct server *s, const struct error *err)
{
    pthread_mutex_lock(&s->lock);
    if (!s->journal_failed) {
        s->journal_failed = true;
        snprintf(s->journal_error, sizeof s->journal_error, "%s", err->msg);
    }
    pthread_mutex_unlock(&s->lock);
    event_active(s->wake, 0, 0);
}

void worker_free_job(struct job *j)
{
    free(j->data);
    free(j->head);
    ledger_rows_free(&j->rows);
    free(j);
}

void worker_measure(struct server *s)
{
    uint64_t disk = journal_bytes(s->journal), end = journal_end(s->journal);
    pthread_mutex_lock(&s->lock);
    s->journal_bytes = disk;
    s->backlog_bytes = end - s->checkpoint_lsn;
    pthread_mutex_unlock(&s->lock);
}

/* Writes the waiting checkpoint: its records are durable and the ledger
 * has every row it covers, so the journal before it may go. */
static bool write_checkpoint(struct server *s)
{
    struct job *j = s->checkpoint;
    struct error err;
    if (!journal_sync(s->journal, &err)) {
        journal_failed(s, &err);
        return false;
    }
    uint64_t lsn = j->seq_lsn;
    if (!journal_write_checkpoint_parts(s->state_dir, lsn, j->head, j->head_len, j->data, j->len,
                                        &err)) {
        /* The journal still holds everything: only the restart gets
         * slower. Tried again in a while, logged once. */
        if (!s->checkpoint_retry_at)
            log_msg(LOG_WARNING, "checkpoint: %s; the journal keeps growing until one is written",
                    err.msg);
        s->checkpoint_retry_at = time(NULL) + CHECKPOINT_RETRY_S;
        return false;
    }
    if (s->checkpoint_retry_at)
        log_msg(LOG_NOTICE, "checkpoint: written again");
    s->checkpoint_retry_at = 0;
    if (!journal_trim(s->journal, lsn, &err))
        log_msg(LOG_WARNING, "journal: %s", err.msg);
    log_msg(LOG_INFO, "checkpoint at journal offset %llu (%zu bytes of engine state)",
            (unsigned long long)lsn, j->head_len + j->len);
    s->checkpoint = NULL;
    s->checkpoint_lsn = lsn;
    worker_free_job(j);
    worker_measure(s);
    return true;
}

/* Writes the waiting checkpoint once the ledger has every row it covers. */
static void try_checkpoint(struct server *s)
{
    if (!s->checkpoint || s->journal_failed || time(NULL) < s->checkpoint_retry_at)
        return;
    struct pg_status st;
    pg_status(s->pg, &st);
    if (st.committed >= s->checkpoint_needs)
        write_checkpoint(s);
}

void worker_final_checkpoint(struct server *s, int timeout_ms)
{
    if (!s->checkpoint) {
        if (s->caps_pending)
            log_msg(LOG_NOTICE, "stop: no final checkpoint (the yearly caps were never read "
                                "back); the journal replays at the next start");
        else
            log_msg(LOG_NOTICE, "stop: the ledger caught up; final checkpoint written");
        return;
    }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct pg_status st;
    for (;;) {
        pg_status(s->pg, &st);
        if (st.committed >= s->checkpoint_needs) {
            uint64_t lsn = s->checkpoint->seq_lsn;
            write_checkpoint(s);
            log_msg(LOG_NOTICE,
                    "stop: the ledger caught up; final checkpoint at journal offset %llu",
                    (unsigned long long)lsn);
            return;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= timeout_ms)
            break;
        struct timespec pause = {0, 20 * 1000000};
        nanosleep(&pause, NULL);
    }
    log_msg(LOG_NOTICE,
            "stop: the flush timed out after %d ms (%llu rows not committed%s); no final "
            "checkpoint: the journal since the last one replays at the next start",
            timeout_ms, (unsigned long long)st.queued,
            st.connected ? "" : ", PostgreSQL unreachable");
}

void *worker_main(void *arg)
{
    struct server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (!s->jobs && !s->worker_stop) {
            /* Woken by a job, or by the ledger writer after a commit (a
             * waiting checkpoint may now be written). */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&s->cond, &s->lock, &until);
        }
        struct job *batch = s->jobs;
        s->jobs = NULL;
        s->jobs_tail = &s->jobs;
        bool stop = s->worker_stop, failed = s->journal_failed;
        pthread_mutex_unlock(&s->lock);
        if (failed) {
            free_jobs(batch);
            batch = NULL;
        }
        try_checkpoint(s);
        if (!batch && stop)
            return NULL;

        while (batch) {
            /* A group: the records up to the next checkpoint share one fsync. */
            struct job *group = batch, *j = batch, *last = NULL;
            struct error err;
            bool ok = true;
            for (; j && j->kind == JOB_RECORD && ok; j = j->next) {
                uint64_t lsn;
                ok = journal_append(s->journal, j->type, j->data, j->len, &lsn, &err);
                last = j;
            }
            if (ok && last && s->fsync_each_group)
                ok = journal_sync(s->journal, &err);
            if (!ok) {
                /* None of the group is durable (some of it may be on disk:
                 * a replay may apply it, and a client's retry of it is a
                 * duplicate). */
                journal_failed(s, &err);
                free_jobs(batch);
                break;
            }
            /* Durable now: their rows may go to the ledger. */
            for (struct job *k = group; k != j; k = k->next)
                if (k->rows.n) {
                    pg_submit(s->pg, k->seq, &k->rows);
                    s->rows_seq = k->seq;
                }
            uint64_t done = last ? last->seq : 0;
            struct job *next_batch = j;
            if (j && j->kind == JOB_CHECKPOINT) {
                /* It waits for the ledger; a newer one replaces it. */
                if (s->checkpoint)
                    worker_free_job(s->checkpoint);
                s->checkpoint = j;
                s->checkpoint_needs = s->rows_seq;
                j->seq_lsn = journal_end(s->journal);
                done = j->seq;
                next_batch = j->next;
            }
            pthread_mutex_lock(&s->lock);
            if (done > s->durable_seq)
                s->durable_seq = done;
            pthread_mutex_unlock(&s->lock);
            worker_measure(s);
            event_active(s->wake, 0, 0);
            while (batch != j) {
                struct job *next = batch->next;
                worker_free_job(batch);
                batch = next;
            }
            batch = next_batch;
            try_checkpoint(s);
        }
    }
}

static void submit(struct server *s, struct job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&s->lock);
    *s->jobs_tail = j;
    s->jobs_tail = &j->next;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Journals a record the engine has just applied, with the rows it made. */
uint64_t worker_submit_record(struct server *s, uint8_t type, const struct record_buf *r)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->kind = JOB_RECORD;
    j->seq = ++s->next_seq;
    j->type = type;
    j->data = xmalloc(r->len ? r->len : 1);
    memcpy(j->data, r->p, r->len);
    j->len = r->len;
    j->rows = s->rows;
    if (s->rows.n)
        s->last_rows_seq = j->seq;
    memset(&s->rows, 0, sizeof s->rows);
    s->bytes_since_checkpoint += r->len;
    uint64_t seq = j->seq; /* the worker owns (and may free) j once submitted */
    submit(s, j);
    return seq;
}

void worker_submit_checkpoint(struct server *s)
{
    if (s->caps_pending)
        return; /* a restart must still see that the caps are not read back */
    struct job *j = xcalloc(1, sizeof *j);
    j->kind = JOB_CHECKPOINT;
    j->seq = ++s->next_seq;
    /* The config in force goes with the engine's state, so a restart
     * replays from it whatever the files on disk say by then. */
    uint32_t config_len = (uint32_t)s->config_record.len;
    j->head_len = 8 + config_len;
    j->head = xmalloc(j->head_len);
    memcpy(j->head, CHECKPOINT_CONFIG_MAGIC, 4);
    memcpy(j->head + 4, &config_len, 4);
    memcpy(j->head + 8, s->config_record.p, config_len);
    j->data = engine_save(s->engine, &j->len);
    s->last_checkpoint = time(NULL);
    s->bytes_since_checkpoint = 0;
    submit(s, j);
}
