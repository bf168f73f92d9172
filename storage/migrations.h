/*
 * migrations: the SQL files of storage/sql/, embedded at build time
 * (storage/embed_sql.py) in name order. The PostgreSQL writer applies each
 * one not yet in schema_migrations, inside a transaction, under an
 * advisory lock.
 */
#ifndef STORAGE_MIGRATIONS_H
#define STORAGE_MIGRATIONS_H

struct migration {
    const char *name; /* "001_ledger.sql" */
    const char *sql;
};

extern const struct migration migrations[];
extern const unsigned n_migrations;

#endif
