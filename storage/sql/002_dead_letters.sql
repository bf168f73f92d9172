-- Rows PostgreSQL refused (a data exception, a constraint violation): the
-- writer puts each here instead of retrying it forever, writes every other
-- row, and /health says "fail" until an operator resolves them.
--
-- params holds the row's statement parameters exactly as they were sent,
-- as raw bytes (so even text that is not valid UTF-8 is kept); the element
-- order is the column order of the INSERT named by row_table (README:
-- "Dead letters"). fingerprint (SHA-256 of row_table and params) keeps a
-- replay of the journal from adding a refused row twice.
CREATE TABLE dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    row_table text NOT NULL CHECK (row_table IN ('billing_rows', 'demand_charges', 'quarantined_samples')),
    params bytea[] NOT NULL,
    fingerprint bytea NOT NULL UNIQUE,
    sqlstate text NOT NULL,
    message text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);

CREATE INDEX dead_letters_unresolved ON dead_letters (id) WHERE resolved_at IS NULL;

-- Once the cause is fixed (a constraint dropped, a value corrected with
-- UPDATE dead_letters SET params[N] = convert_to('...', 'UTF8')), an
-- operator re-submits a dead letter with SELECT resubmit_dead_letter(id):
-- the row goes into its table exactly as the daemon would have written it
-- (with its subsidy lines; a row the table already has is skipped), the
-- letter is marked resolved, and consumers are notified. Returns the new
-- row's id (NULL when it was already there).
CREATE FUNCTION resubmit_dead_letter(letter bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d dead_letters;
    p text[];
    new_id bigint;
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
        INSERT INTO demand_charges (tenant, cluster, site, province, month, basis, max_kw,
            max_interval_start, billing_kw, charge, subsidy, net, programme, tariff_version,
            kind, revision)
        VALUES (p[1], p[2], p[3], p[4], p[5]::date, p[6], p[7]::numeric, p[8]::timestamptz,
            p[9]::numeric, p[10]::numeric, p[11]::numeric, p[12]::numeric, p[13], p[14], p[15],
            p[16]::integer)
        ON CONFLICT (cluster, month, revision) DO NOTHING RETURNING id INTO new_id;
        IF new_id IS NOT NULL THEN
            INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount)
            SELECT 'demand_charges', new_id, x.prog, p[1], p[17]::integer, x.amount
            FROM unnest(p[18]::text[], p[19]::numeric[]) AS x(prog, amount);
        END IF;
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
