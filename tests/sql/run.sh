#!/bin/bash
# The ledger schema against a real PostgreSQL: creates a scratch database and
# three scratch roles (owner, writer, reader), applies storage/sql/*.sql the
# way tariffd does (storage/pg.c: one transaction, SET LOCAL search_path, each
# file sent whole as one simple-protocol query, recorded in
# schema_migrations) as the non-superuser owner, then runs test_ledger.sql.
# Everything it creates is dropped at the end.
#
# usage: run.sh SOURCE_ROOT   (server from PGHOST, PGPORT, PGUSER: a role
# that can create databases and roles, such as the throwaway cluster of
# scripts/lib/common.sh start_postgres)
set -u

root=${1:?usage: run.sh SOURCE_ROOT}
if [ -z "${PGHOST:-}" ]; then
    echo "skipped: PGHOST is not set (start a throwaway server first:" \
        ". scripts/lib/common.sh; start_postgres)"
    exit 77
fi

db=tariffd_sqltest_$$
owner=${db}_owner writer=${db}_writer reader=${db}_reader
schema=tariffd
psql=(psql -X -q -v ON_ERROR_STOP=1)
passed=0 failed=0

cleanup() {
    "${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" \
        -c "DROP ROLE IF EXISTS $owner, $writer, $reader" >/dev/null 2>&1
}
trap cleanup EXIT

finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

if ! "${psql[@]}" -d postgres -c "CREATE DATABASE $db" \
    -c "CREATE ROLE $owner NOLOGIN" -c "CREATE ROLE $writer NOLOGIN" \
    -c "CREATE ROLE $reader NOLOGIN"; then
    echo "FAIL: cannot create the scratch database and roles"
    failed=1
    finish
fi

# The owner creates and migrates the schema, as tariffd does when it logs in
# as the owner (CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even
# when the schema exists).
if "${psql[@]}" -d "$db" -c "GRANT CREATE ON DATABASE $db TO $owner" \
    -c "CREATE SCHEMA $schema AUTHORIZATION $owner"; then
    passed=$((passed + 1))
    echo "ok scratch database $db with schema $schema owned by $owner"
else
    failed=1
    finish
fi

migrate=(-c "SET client_min_messages TO warning" -c "SET ROLE $owner" -c "BEGIN"
    -c "SELECT pg_advisory_xact_lock(hashtext('tariffd migrate'), hashtext('$schema'))"
    -c "CREATE SCHEMA IF NOT EXISTS $schema"
    -c "SET LOCAL search_path TO $schema"
    -c "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now())")
files=()
for f in "$root"/storage/sql/*.sql; do
    [ -e "$f" ] || continue
    files+=("$(basename "$f")")
    migrate+=(-c "$(cat "$f")" -c "INSERT INTO schema_migrations (name) VALUES ('$(basename "$f")')")
done
migrate+=(-c "COMMIT")
if [ ${#files[@]} -eq 0 ]; then
    echo "FAIL: no migrations in $root/storage/sql"
    failed=1
    finish
fi
if "${psql[@]}" -d "$db" "${migrate[@]}" >/dev/null; then
    passed=$((passed + 1))
    echo "ok migrations applied as $owner in one transaction: ${files[*]}"
else
    echo "FAIL: applying the migrations"
    failed=1
    finish
fi

# Each check prints one "ok ..." line; the first failure raises "FAIL: ..."
# and stops the script (ON_ERROR_STOP), so at most one failure is counted.
out=$("${psql[@]}" -A -t -d "$db" -v owner="$owner" -v writer="$writer" -v reader="$reader" \
    -f "$root/tests/sql/test_ledger.sql" 2>&1)
status=$?
printf '%s\n' "$out" | grep -v '^$'
passed=$((passed + $(printf '%s\n' "$out" | grep -c '^ok ')))
if [ $status -ne 0 ]; then
    failed=$((failed + 1))
fi
finish
