-- 001_ledger.sql: the billing ledger (docs/design.md section 5).
--
-- tariffd applies this file once per schema, inside a transaction, after
-- SET LOCAL search_path TO <schema> (storage/pg.c), so every name here is
-- unqualified, and the file holds only plain SQL that can run inside a
-- transaction: no BEGIN/COMMIT, no CREATE SCHEMA, no psql meta-commands.
-- The daemon creates schema_migrations itself. Keep the file ASCII: it is
-- embedded in a C string (storage/embed_sql.py).
--
-- Money is numeric, never floating point: per-row amounts have 4 decimals,
-- kWh and prices 6; the views sum the 4-decimal amounts and round the sum
-- half-even to 0.01 CNY. The row tables are append-only: a late sample adds
-- an adjustment row (revision 1, 2, ...) carrying the difference, so every
-- total is a sum over revisions. The CHECKs below guard invariants of
-- docs/design.md section 5 that hold for adjustments too (they carry differences).

-- Banker's rounding: v rounded to `places` decimals, a tie going to the even
-- neighbour. round(numeric) rounds ties away from zero, so the tie is
-- detected exactly: v lies halfway between trunc(v) and round(v) when they
-- differ and their sum is 2v; then their distance u is one unit in the last
-- place, and trunc(v) is the even neighbour when it is a multiple of 2u.
-- Pure numeric arithmetic (no float); the result has `places` decimals
-- (0 for negative places), and a zero result is never negative.
CREATE FUNCTION round_half_even(v numeric, places integer) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE
    WHEN round(v, places) <> trunc(v, places)
         AND round(v, places) + trunc(v, places) = 2 * v
         AND mod(trunc(v, places), 2 * abs(round(v, places) - trunc(v, places))) = 0
    THEN trunc(v, places)
    ELSE round(v, places)
END;

COMMENT ON FUNCTION round_half_even(numeric, integer) IS
    'v rounded to places decimals, ties to even (banker''s rounding), exact';

-- One row per cluster per closed interval and revision.
CREATE TABLE billing_rows (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant         text NOT NULL,
    cluster        text NOT NULL,
    site           text NOT NULL,
    province       text NOT NULL,
    interval_start timestamptz NOT NULL,
    interval_end   timestamptz NOT NULL,
    month          date NOT NULL,
    kind           text NOT NULL,
    revision       integer NOT NULL,
    period         text NOT NULL,
    kwh            numeric(20, 6) NOT NULL,
    price          numeric(12, 6) NOT NULL,
    surcharge_rate numeric(12, 6) NOT NULL,
    energy_charge  numeric(20, 4) NOT NULL,
    surcharge      numeric(20, 4) NOT NULL,
    subsidy        numeric(20, 4) NOT NULL,
    net            numeric(20, 4) NOT NULL,
    domestic_share numeric(7, 6) NOT NULL,
    programme      text,
    tariff_version text NOT NULL,
    missing_s      integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Replays and retries cannot double-bill: the daemon inserts with
    -- ON CONFLICT (cluster, interval_start, revision) DO NOTHING.
    CONSTRAINT billing_rows_cluster_interval_revision_key
        UNIQUE (cluster, interval_start, revision),
    CONSTRAINT billing_rows_kind_check CHECK (kind IN ('interval', 'adjustment')),
    CONSTRAINT billing_rows_revision_check
        CHECK (revision >= 0 AND (kind = 'interval') = (revision = 0)),
    CONSTRAINT billing_rows_interval_check CHECK (interval_end > interval_start),
    CONSTRAINT billing_rows_month_check CHECK (extract(day FROM month) = 1),
    CONSTRAINT billing_rows_net_check CHECK (net = energy_charge + surcharge - subsidy),
    CONSTRAINT billing_rows_domestic_share_check CHECK (domestic_share BETWEEN 0 AND 1)
);

-- Consumers read WHERE id > $1 ORDER BY id (the primary key). This index
-- serves the views and reports filtered by month, then tenant, then
-- cluster (a statement run: one month, one tenant); a filter on cluster
-- alone uses the unique key.
CREATE INDEX billing_rows_month_tenant_cluster_idx ON billing_rows (month, tenant, cluster);

COMMENT ON TABLE billing_rows IS
    'one row per cluster per closed interval; adjustments (revision > 0) carry differences';

-- One row per cluster per closed local month and revision.
CREATE TABLE demand_charges (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant             text NOT NULL,
    cluster            text NOT NULL,
    site               text NOT NULL,
    province           text NOT NULL,
    month              date NOT NULL,
    basis              text NOT NULL,
    max_kw             numeric(20, 6) NOT NULL,
    max_interval_start timestamptz,
    billing_kw         numeric(20, 6) NOT NULL,
    charge             numeric(20, 4) NOT NULL,
    subsidy            numeric(20, 4) NOT NULL,
    net                numeric(20, 4) NOT NULL,
    programme          text,
    tariff_version     text NOT NULL,
    kind               text NOT NULL,
    revision           integer NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT demand_charges_cluster_month_revision_key UNIQUE (cluster, month, revision),
    CONSTRAINT demand_charges_kind_check CHECK (kind IN ('month', 'adjustment')),
    CONSTRAINT demand_charges_revision_check
        CHECK (revision >= 0 AND (kind = 'month') = (revision = 0)),
    CONSTRAINT demand_charges_basis_check CHECK (basis IN ('max_demand', 'capacity', 'contract')),
    CONSTRAINT demand_charges_month_check CHECK (extract(day FROM month) = 1),
    CONSTRAINT demand_charges_net_check CHECK (net = charge - subsidy)
);

CREATE INDEX demand_charges_month_tenant_cluster_idx ON demand_charges (month, tenant, cluster);

COMMENT ON TABLE demand_charges IS
    'one row per cluster per closed local month; adjustments (revision > 0) carry differences';

-- What each programme paid on each row (for an adjustment: the change).
-- row_id points into the table named by row_table; it cannot be a foreign
-- key (two tables), but the daemon inserts a row and its lines in one
-- statement, and nobody but the owner can delete rows.
CREATE TABLE subsidy_lines (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    row_table text NOT NULL,
    row_id    bigint NOT NULL,
    programme text NOT NULL,
    tenant    text NOT NULL,
    year      integer NOT NULL,
    amount    numeric(20, 4) NOT NULL,
    CONSTRAINT subsidy_lines_row_programme_key UNIQUE (row_table, row_id, programme),
    CONSTRAINT subsidy_lines_row_table_check
        CHECK (row_table IN ('billing_rows', 'demand_charges'))
);

-- subsidy_by_programme and the daemon's cap recovery (sum by programme,
-- tenant and year).
CREATE INDEX subsidy_lines_programme_tenant_year_idx ON subsidy_lines (programme, tenant, year);

COMMENT ON TABLE subsidy_lines IS
    'what each programme paid on each billing_rows or demand_charges row (local year)';

-- Samples that could not be billed, with the reason. Diagnostic data: no
-- constraint beyond the reason, so that nothing is ever refused here.
CREATE TABLE quarantined_samples (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster     text,
    meter       text,
    ts          timestamptz,
    ts_ns       bigint,
    value       double precision,
    kind        text,
    reason      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- a replay after a crash quarantines the same sample again: once is enough
    CONSTRAINT quarantined_samples_sample_key UNIQUE NULLS NOT DISTINCT (cluster, meter, ts_ns, reason)
);

COMMENT ON TABLE quarantined_samples IS 'samples that could not be billed, and why';
COMMENT ON COLUMN quarantined_samples.value IS 'the raw measurement (kW or kWh), not money';

-- Every tariff version tariffd has loaded, with its text as hashed.
CREATE TABLE tariff_versions (
    name      text NOT NULL,
    effective date NOT NULL,
    hash      text NOT NULL,
    label     text PRIMARY KEY,
    text      text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tariff_versions_hash_check CHECK (hash ~ '^[0-9a-f]{8}$'),
    CONSTRAINT tariff_versions_label_check
        CHECK (starts_with(label, name || '@') AND right(label, 9) = '#' || hash)
);

COMMENT ON TABLE tariff_versions IS 'every loaded tariff version: label NAME@DATE#H and its text';

-- The programmes' yearly caps, for subsidy_by_programme: tariffd replaces
-- the contents from the config (cap_cny_per_year) each time it connects.
-- A programme without a cap has no row (or a NULL cap). The config's cap
-- applies to each tenant separately, per local calendar year: that is a
-- row with tenant NULL. A non-NULL tenant limits the row to that tenant.
CREATE TABLE programme_caps (
    programme        text PRIMARY KEY,
    tenant           text,
    cap_cny_per_year numeric(20, 4),
    CONSTRAINT programme_caps_cap_check CHECK (cap_cny_per_year >= 0)
);

COMMENT ON TABLE programme_caps IS
    'yearly cap per programme (per tenant, per local year), copied from the config by tariffd';

-- The views: everything summed from the ledger, adjustments included, the
-- 4-decimal amounts summed first and the sum rounded half-even to 0.01 CNY;
-- kWh is the exact sum. Each rounds on its own, so net may differ from
-- energy_charge + surcharge + demand_charge - subsidy by a fen.

-- Per tenant, cluster and local month; subsidy and net include the demand
-- rows. A cluster-month with only billing rows or only demand rows appears
-- too (union, then aggregate).
CREATE VIEW monthly_statements AS
SELECT tenant, cluster, province, month,
       sum(kwh)::numeric(20, 6) AS kwh,
       round_half_even(sum(energy_charge), 2)::numeric(20, 2) AS energy_charge,
       round_half_even(sum(surcharge), 2)::numeric(20, 2) AS surcharge,
       round_half_even(sum(demand_charge), 2)::numeric(20, 2) AS demand_charge,
       round_half_even(sum(subsidy), 2)::numeric(20, 2) AS subsidy,
       round_half_even(sum(net), 2)::numeric(20, 2) AS net
FROM (
    SELECT tenant, cluster, province, month, kwh, energy_charge, surcharge,
           0::numeric(20, 4) AS demand_charge, subsidy, net
    FROM billing_rows
    UNION ALL
    SELECT tenant, cluster, province, month, 0::numeric(20, 6), 0::numeric(20, 4),
           0::numeric(20, 4), charge, subsidy, net
    FROM demand_charges
) AS r
GROUP BY tenant, cluster, province, month;

COMMENT ON VIEW monthly_statements IS
    'per tenant, cluster and local month: kWh exact, amounts rounded half-even to 0.01 CNY';

CREATE VIEW monthly_by_period AS
SELECT tenant, cluster, month, period,
       sum(kwh)::numeric(20, 6) AS kwh,
       round_half_even(sum(energy_charge), 2)::numeric(20, 2) AS energy_charge
FROM billing_rows
GROUP BY tenant, cluster, month, period;

COMMENT ON VIEW monthly_by_period IS
    'per tenant, cluster, local month and time-of-use period';

-- Per programme, tenant, local year and month (the month of the row each
-- line was paid on). cap_remaining is the cap less everything the programme
-- paid that tenant in that year up to and including the month (exact, then
-- rounded); NULL when the programme has no cap in programme_caps. The cap is
-- the one configured now: a cap lowered below what was paid shows negative.
CREATE VIEW subsidy_by_programme AS
WITH monthly AS (
    SELECT l.programme, l.tenant, l.year, coalesce(b.month, d.month) AS month,
           sum(l.amount) AS amount
    FROM subsidy_lines AS l
    LEFT JOIN billing_rows AS b ON l.row_table = 'billing_rows' AND b.id = l.row_id
    LEFT JOIN demand_charges AS d ON l.row_table = 'demand_charges' AND d.id = l.row_id
    GROUP BY l.programme, l.tenant, l.year, coalesce(b.month, d.month)
)
SELECT m.programme, m.tenant, m.year, m.month,
       round_half_even(m.amount, 2)::numeric(20, 2) AS subsidy,
       round_half_even(c.cap_cny_per_year - sum(m.amount) OVER so_far, 2)::numeric(20, 2)
           AS cap_remaining
FROM monthly AS m
LEFT JOIN programme_caps AS c
    ON c.programme = m.programme AND (c.tenant IS NULL OR c.tenant = m.tenant)
WINDOW so_far AS (PARTITION BY m.programme, m.tenant, m.year ORDER BY m.month);

COMMENT ON VIEW subsidy_by_programme IS
    'per programme, tenant, local year and month; cap_remaining after that month (NULL: no cap)';
