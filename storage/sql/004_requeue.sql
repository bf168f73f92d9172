-- 004_requeue.sql: which quarantined samples were sent back through pricing
-- (docs/design.md section 7, tariffd requeue).
--
-- tariffd requeue hands samples of quarantined_samples back to the engine
-- and records here, append-only, that each was released and when. A sample
-- without a row here is still waiting; one with a row was priced again (or
-- quarantined again, as a new quarantined_samples row if its reason
-- changed). quarantined_samples itself is never updated: it stays the
-- record of what was refused and why.
--
-- The same rules as 001: plain SQL run inside the daemon's migration
-- transaction, search_path set, ASCII only.

-- One row per released sample. The unique key makes a release idempotent:
-- a replay after a crash releases the same sample again, and the daemon
-- inserts with ON CONFLICT (quarantined_id) DO NOTHING, so the first
-- release and its time stay. The key's index also serves the requeue's
-- read (the samples with no release: an anti-join on quarantined_id), so
-- no other index is needed.
CREATE TABLE quarantine_releases (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    quarantined_id bigint NOT NULL REFERENCES quarantined_samples (id),
    released_at    timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quarantine_releases_quarantined_key UNIQUE (quarantined_id)
);

COMMENT ON TABLE quarantine_releases IS
    'quarantined samples sent back through pricing by tariffd requeue, once each';
COMMENT ON COLUMN quarantine_releases.released_at IS
    'when the requeue released the sample (its journaled clock), not when the row was written';

-- A release PostgreSQL refuses (a sample that is not in quarantined_samples)
-- goes to dead_letters like any other row: row_table names the new table,
-- and params holds the release's two parameters, the quarantined id and
-- the release time in nanoseconds since the epoch, as text.
ALTER TABLE dead_letters
    DROP CONSTRAINT dead_letters_row_table_check,
    ADD CONSTRAINT dead_letters_row_table_check
        CHECK (row_table IN ('billing_rows', 'demand_charges', 'quarantined_samples',
                             'quarantine_releases'));

-- resubmit_dead_letter (003) learns the release: the rest is unchanged.
CREATE OR REPLACE FUNCTION resubmit_dead_letter(letter bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d dead_letters;
    p text[];
    new_id bigint;
    k integer;
BEGIN
    SELECT * INTO d FROM dead_letters WHERE id = letter AND resolved_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no unresolved dead letter %', letter;
    END IF;
    SELECT array_agg(convert_from(x, 'UTF8') ORDER BY i) INTO p
    FROM unnest(d.params) WITH ORDINALITY AS u(x, i);
    IF d.row_table = 'billing_rows' THEN
        INSERT INTO billing_rows (tenant, cluster, site, province, interval_start, interval_end,
            month, kind, revision, period, kwh, price, surcharge_rate, energy_charge, surcharge,
            subsidy, net, domestic_share, programme, tariff_version, missing_s)
        VALUES (p[1], p[2], p[3], p[4], p[5]::timestamptz, p[6]::timestamptz, p[7]::date, p[8],
            p[9]::integer, p[10], p[11]::numeric, p[12]::numeric, p[13]::numeric,
            p[14]::numeric, p[15]::numeric, p[16]::numeric, p[17]::numeric, p[18]::numeric,
            p[19], p[20], p[21]::integer)
        ON CONFLICT (cluster, interval_start, revision) DO NOTHING RETURNING id INTO new_id;
        IF new_id IS NOT NULL THEN
            INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount)
            SELECT 'billing_rows', new_id, x.prog, p[1], p[22]::integer, x.amount
            FROM unnest(p[23]::text[], p[24]::numeric[]) AS x(prog, amount);
        END IF;
    ELSIF d.row_table = 'demand_charges' THEN
        -- k: where the year is, after the row's columns
        k := CASE WHEN cardinality(p) >= 21 THEN 19 ELSE 17 END;
        INSERT INTO demand_charges (tenant, cluster, site, province, month, basis, max_kw,
            max_interval_start, billing_kw, charge, subsidy, net, programme, tariff_version,
            kind, revision, days_in_service, proration)
        VALUES (p[1], p[2], p[3], p[4], p[5]::date, p[6], p[7]::numeric, p[8]::timestamptz,
            p[9]::numeric, p[10]::numeric, p[11]::numeric, p[12]::numeric, p[13], p[14], p[15],
            p[16]::integer, CASE WHEN k = 19 THEN p[17]::integer END,
            CASE WHEN k = 19 THEN p[18] END)
        ON CONFLICT (cluster, month, revision) DO NOTHING RETURNING id INTO new_id;
        IF new_id IS NOT NULL THEN
            INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount)
            SELECT 'demand_charges', new_id, x.prog, p[1], p[k]::integer, x.amount
            FROM unnest(p[k + 1]::text[], p[k + 2]::numeric[]) AS x(prog, amount);
        END IF;
    ELSIF d.row_table = 'quarantine_releases' THEN
        -- p[2]: nanoseconds, kept to the microsecond exactly (no float)
        INSERT INTO quarantine_releases (quarantined_id, released_at)
        VALUES (p[1]::bigint,
            timestamptz 'epoch' + (p[2]::bigint / 1000) * interval '1 microsecond')
        ON CONFLICT (quarantined_id) DO NOTHING RETURNING id INTO new_id;
    ELSE
        INSERT INTO quarantined_samples (cluster, meter, ts, ts_ns, value, kind, reason)
        VALUES (p[1], p[2], to_timestamp(p[3]::bigint / 1e9), p[3]::bigint,
            p[4]::double precision, p[5], p[6])
        ON CONFLICT (cluster, meter, ts_ns, reason) DO NOTHING RETURNING id INTO new_id;
    END IF;
    UPDATE dead_letters SET resolved_at = now() WHERE id = letter;
    PERFORM pg_notify('tariffd_billing', coalesce((SELECT max(id) FROM billing_rows), 0)::text);
    RETURN new_id;
END
$$;
