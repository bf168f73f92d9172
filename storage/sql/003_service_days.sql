-- 003_service_days.sql: a demand charge says how it was computed
-- (docs/design.md section 5, "demand_charges").
--
-- In the month a cluster enters or leaves service, or changes its billed
-- transformer_kva or contract_kw, the demand charge is prorated: each day in
-- service at 1/30 of the monthly charge in force that day. Such a row names
-- its days in service and its proration, the charge as a sum with one term
-- per run of days with one monthly charge:
--   15/30 x 305000.0000 (2026-04-01..2026-04-15; billing_kw 12500.000000)
--   + 15/30 x 366000.0000 (2026-04-16..2026-04-30; billing_kw 15000.000000)
-- (one line in the column), the charge being that sum rounded half-even to
-- 4 decimals. A month billed whole has both NULL, as every row written
-- before this migration has. An adjustment's proration describes the new
-- pricing, as its other descriptive columns do.
--
-- The same rules as 001: plain SQL run inside the daemon's migration
-- transaction, search_path set, ASCII only.

ALTER TABLE demand_charges
    ADD COLUMN days_in_service integer,
    ADD COLUMN proration text,
    ADD CONSTRAINT demand_charges_proration_check
        CHECK ((days_in_service IS NULL) = (proration IS NULL)
               AND days_in_service BETWEEN 0 AND 31);

COMMENT ON COLUMN demand_charges.days_in_service IS
    'days in service of a prorated month (each at 1/30 of its monthly charge); NULL: a whole month';
COMMENT ON COLUMN demand_charges.proration IS
    'the prorated charge as a sum: D/30 x MONTHLY (FROM..UNTIL; billing_kw KW) + ...; NULL: a whole month';

-- monthly_statements gains demand_days: the days in service of the month's
-- demand charge as its latest revision says, NULL when it is a whole month
-- (or the month has no demand row). The other columns are unchanged.
CREATE OR REPLACE VIEW monthly_statements AS
SELECT tenant, cluster, province, month,
       sum(kwh)::numeric(20, 6) AS kwh,
       round_half_even(sum(energy_charge), 2)::numeric(20, 2) AS energy_charge,
       round_half_even(sum(surcharge), 2)::numeric(20, 2) AS surcharge,
       round_half_even(sum(demand_charge), 2)::numeric(20, 2) AS demand_charge,
       round_half_even(sum(subsidy), 2)::numeric(20, 2) AS subsidy,
       round_half_even(sum(net), 2)::numeric(20, 2) AS net,
       (array_agg(days_in_service ORDER BY revision DESC)
            FILTER (WHERE is_demand))[1] AS demand_days
FROM (
    SELECT tenant, cluster, province, month, kwh, energy_charge, surcharge,
           0::numeric(20, 4) AS demand_charge, subsidy, net,
           false AS is_demand, NULL::integer AS days_in_service, revision
    FROM billing_rows
    UNION ALL
    SELECT tenant, cluster, province, month, 0::numeric(20, 6), 0::numeric(20, 4),
           0::numeric(20, 4), charge, subsidy, net, true, days_in_service, revision
    FROM demand_charges
) AS r
GROUP BY tenant, cluster, province, month;

COMMENT ON VIEW monthly_statements IS
    'per tenant, cluster and local month: kWh exact, amounts rounded half-even to 0.01 CNY; '
    'demand_days: days in service of a prorated demand charge';

-- resubmit_dead_letter (002) knows the demand row's two new parameters: a
-- demand dead letter now holds 18 columns, the year and the two arrays of
-- its subsidy lines (21 parameters); one written before this migration
-- holds 16 columns (19 parameters) and goes in as a whole month.
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
