-- The ledger schema (storage/sql/*.sql) against a real PostgreSQL, run by
-- tests/sql/run.sh after the migrations: psql -A -t -v ON_ERROR_STOP=1 with
-- the variables owner, writer and reader naming scratch roles.
--
-- Every check prints "ok <what>"; a failed one raises "FAIL: <what>" and
-- stops the run. Money expectations are hand-computed from the fixture
-- below, the arithmetic in the comments; values are compared in their text
-- form, so the number of decimals is checked too.

SET client_min_messages TO warning;
SET TIME ZONE 'UTC';
SET ROLE :"owner";
SET search_path TO tariffd;

CREATE FUNCTION pg_temp.check(ok boolean, what text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'FAIL: %', what;
    END IF;
    RETURN 'ok ' || what;
END
$$;

-- The SQLSTATE that sql fails with, or '00000' when it succeeds; its
-- effects are undone either way.
CREATE FUNCTION pg_temp.sqlstate_of(sql text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE sql;
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLSTATE;
    END;
    RAISE EXCEPTION 'undo' USING ERRCODE = 'U0001';
EXCEPTION WHEN SQLSTATE 'U0001' THEN
    RETURN '00000';
END
$$;

-- "name type[ not null], ..." of a table or view, in column order.
CREATE FUNCTION pg_temp.columns(rel regclass) RETURNS text
LANGUAGE sql AS $$
    SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod)
                      || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum)
    FROM pg_attribute
    WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped
$$;

------------------------------------------------------------------------------
-- The shape: docs/design.md section 5's columns, types, keys.

SELECT pg_temp.check(pg_temp.columns('billing_rows') =
    'id bigint not null, tenant text not null, cluster text not null, site text not null, '
    'province text not null, interval_start timestamp with time zone not null, '
    'interval_end timestamp with time zone not null, month date not null, kind text not null, '
    'revision integer not null, period text not null, kwh numeric(20,6) not null, '
    'price numeric(12,6) not null, surcharge_rate numeric(12,6) not null, '
    'energy_charge numeric(20,4) not null, surcharge numeric(20,4) not null, '
    'subsidy numeric(20,4) not null, net numeric(20,4) not null, '
    'domestic_share numeric(7,6) not null, programme text, tariff_version text not null, '
    'missing_s integer not null, created_at timestamp with time zone not null',
    'billing_rows columns and types');

SELECT pg_temp.check(pg_temp.columns('demand_charges') =
    'id bigint not null, tenant text not null, cluster text not null, site text not null, '
    'province text not null, month date not null, basis text not null, '
    'max_kw numeric(20,6) not null, max_interval_start timestamp with time zone, '
    'billing_kw numeric(20,6) not null, charge numeric(20,4) not null, '
    'subsidy numeric(20,4) not null, net numeric(20,4) not null, programme text, '
    'tariff_version text not null, kind text not null, revision integer not null, '
    'created_at timestamp with time zone not null, days_in_service integer, proration text',
    'demand_charges columns and types (003 adds days_in_service and proration)');

SELECT pg_temp.check(pg_temp.columns('subsidy_lines') =
    'id bigint not null, row_table text not null, row_id bigint not null, '
    'programme text not null, tenant text not null, year integer not null, '
    'amount numeric(20,4) not null',
    'subsidy_lines columns and types');

SELECT pg_temp.check(pg_temp.columns('quarantined_samples') =
    'id bigint not null, cluster text, meter text, ts timestamp with time zone, ts_ns bigint, '
    'value double precision, kind text, reason text not null, '
    'received_at timestamp with time zone not null',
    'quarantined_samples columns and types');

SELECT pg_temp.check(pg_temp.columns('quarantine_releases') =
    'id bigint not null, quarantined_id bigint not null, '
    'released_at timestamp with time zone not null, '
    'created_at timestamp with time zone not null',
    'quarantine_releases columns and types (004)');

SELECT pg_temp.check(pg_temp.columns('tariff_versions') =
    'name text not null, effective date not null, hash text not null, label text not null, '
    'text text not null, loaded_at timestamp with time zone not null',
    'tariff_versions columns and types');

SELECT pg_temp.check(pg_temp.columns('programme_caps') =
    'programme text not null, tenant text, cap_cny_per_year numeric(20,4)',
    'programme_caps columns and types');

SELECT pg_temp.check(pg_temp.columns('monthly_statements') =
    'tenant text, cluster text, province text, month date, kwh numeric(20,6), '
    'energy_charge numeric(20,2), surcharge numeric(20,2), demand_charge numeric(20,2), '
    'subsidy numeric(20,2), net numeric(20,2), demand_days integer',
    'monthly_statements columns');

SELECT pg_temp.check(pg_temp.columns('monthly_by_period') =
    'tenant text, cluster text, month date, period text, kwh numeric(20,6), '
    'energy_charge numeric(20,2)',
    'monthly_by_period columns');

SELECT pg_temp.check(pg_temp.columns('subsidy_by_programme') =
    'programme text, tenant text, year integer, month date, subsidy numeric(20,2), '
    'cap_remaining numeric(20,2)',
    'subsidy_by_programme columns');

SELECT pg_temp.check(count(*) = 4 AND bool_and(a.attidentity = 'a'),
                     'id is GENERATED ALWAYS AS IDENTITY in the four row tables')
FROM pg_attribute AS a
WHERE a.attname = 'id' AND a.attrelid IN ('billing_rows'::regclass, 'demand_charges'::regclass,
                                          'subsidy_lines'::regclass,
                                          'quarantined_samples'::regclass);

SELECT pg_temp.check(string_agg(conrelid::regclass || ' ' || pg_get_constraintdef(oid), '; '
                                ORDER BY conrelid::regclass::text COLLATE "C") =
    'billing_rows UNIQUE (cluster, interval_start, revision); '
    'dead_letters UNIQUE (fingerprint); '
    'demand_charges UNIQUE (cluster, month, revision); '
    'quarantine_releases UNIQUE (quarantined_id); '
    'quarantined_samples UNIQUE NULLS NOT DISTINCT (cluster, meter, ts_ns, reason); '
    'subsidy_lines UNIQUE (row_table, row_id, programme)',
    'unique keys (cluster, interval_start, revision), (fingerprint), (cluster, month, revision), '
    '(quarantined_id), (cluster, meter, ts_ns, reason), (row_table, row_id, programme)')
FROM pg_constraint
WHERE contype = 'u' AND connamespace = 'tariffd'::regnamespace;

SELECT pg_temp.check(string_agg(conrelid::regclass || ' ' || pg_get_constraintdef(oid), '; ') =
    'quarantine_releases FOREIGN KEY (quarantined_id) REFERENCES quarantined_samples(id)',
    'the one foreign key: a release names a quarantined sample')
FROM pg_constraint
WHERE contype = 'f' AND connamespace = 'tariffd'::regnamespace;

SELECT pg_temp.check(a.attidentity = 'a'
                     AND obj_description('quarantine_releases'::regclass, 'pg_class') IS NOT NULL
                     AND col_description('quarantine_releases'::regclass, 3) IS NOT NULL,
                     'quarantine_releases: id is an identity column; table and released_at '
                     'are commented')
FROM pg_attribute AS a
WHERE a.attrelid = 'quarantine_releases'::regclass AND a.attname = 'id';

SELECT pg_temp.check(provolatile = 'i' AND proisstrict AND proparallel = 's',
                     'round_half_even is IMMUTABLE STRICT PARALLEL SAFE')
FROM pg_proc
WHERE oid = 'round_half_even(numeric, integer)'::regprocedure;

SELECT pg_temp.check(to_regclass('schema_migrations') IS NOT NULL
                     AND (SELECT count(*) FROM schema_migrations) >= 1,
                     'run.sh recorded the migrations in schema_migrations, as tariffd does');

------------------------------------------------------------------------------
-- round_half_even: a table of cases, compared as text (value and decimals).

SELECT pg_temp.check(round_half_even(v, places)::text = want,
                     format('round_half_even(%s, %s) = %s (got %s)', v, places, want,
                            round_half_even(v, places)))
FROM (VALUES
    -- ties go to the even neighbour (round() goes away from zero)
    (0.125, 2, '0.12'), (0.135, 2, '0.14'), (0.145, 2, '0.14'), (0.015, 2, '0.02'),
    (-0.125, 2, '-0.12'), (-0.135, 2, '-0.14'), (-0.145, 2, '-0.14'),
    (12.4050, 2, '12.40'), (12.4150, 2, '12.42'),
    (2.5, 0, '2'), (3.5, 0, '4'), (-2.5, 0, '-2'), (-3.5, 0, '-4'),
    (0.5, 0, '0'), (1.5, 0, '2'),
    -- a tie that carries into the integer part
    (9.995, 2, '10.00'), (-9.995, 2, '-10.00'), (99.5, 0, '100'),
    -- a zero result is never negative
    (0.005, 2, '0.00'), (-0.005, 2, '0.00'), (-0.5, 0, '0'), (-0.001, 2, '0.00'),
    (-0.00005, 4, '0.0000'),
    -- 4 and 6 places, as the engine rounds charges and kWh
    (0.22925, 4, '0.2292'), (2.33835, 4, '2.3384'), (-0.22925, 4, '-0.2292'),
    (0.0114625, 6, '0.011462'), (1.0000005, 6, '1.000000'), (1.0000015, 6, '1.000002'),
    -- not ties: the nearest neighbour, either sign
    (0.1251, 2, '0.13'), (0.1249, 2, '0.12'), (-0.1251, 2, '-0.13'), (-0.1249, 2, '-0.12'),
    (0.12500001, 2, '0.13'), (-0.12499999, 2, '-0.12'), (2.51, 0, '3'), (-2.49, 0, '-2'),
    -- already exact: same value, `places` decimals
    (1.5, 4, '1.5000'), (-7, 2, '-7.00'), (0, 2, '0.00'), (0.12, 2, '0.12'),
    -- negative places round to tens, hundreds
    (125, -1, '120'), (135, -1, '140'), (-125, -1, '-120'), (1250, -2, '1200'),
    (1350, -2, '1400'),
    -- beyond double precision
    (12345678901234567890.123456785, 8, '12345678901234567890.12345678'),
    (12345678901234567890.123456775, 8, '12345678901234567890.12345678'),
    (0.30000000000000000005, 19, '0.3000000000000000000'),
    (0.30000000000000000015, 19, '0.3000000000000000002'),
    ('NaN', 2, 'NaN')
) AS t(v, places, want);

SELECT pg_temp.check(round_half_even(NULL, 2) IS NULL AND round_half_even(1.5, NULL) IS NULL,
                     'round_half_even is NULL on NULL input');

-- Against an integer-only oracle: n thousandths (or n units of the place
-- after `places`) rounded to `places` decimals: q = |n| div 10, r = |n| mod
-- 10, up when r > 5 or r = 5 and q is odd; all n in [-2005, 2005], places
-- 0 to 6.
SELECT pg_temp.check(count(*) = 7 * 4011 AND bool_and(got = want AND scale(got) = places),
                     'round_half_even agrees with an integer oracle on 28077 values')
FROM (
    SELECT places,
           round_half_even((n || 'e-' || (places + 1))::numeric, places) AS got,
           ((CASE WHEN n < 0 THEN -1 ELSE 1 END * (abs(n) / 10
                        + CASE WHEN abs(n) % 10 > 5 OR (abs(n) % 10 = 5 AND abs(n) / 10 % 2 = 1)
                               THEN 1 ELSE 0 END)) || 'e-' || places)::numeric AS want
    FROM generate_series(-2005, 2005) AS n, generate_series(0, 6) AS places
) AS t;

------------------------------------------------------------------------------
-- The fixture: hand-made rows. Gansu prices (CNY/kWh): valley 0.248100,
-- flat 0.496200, peak 0.744300, surcharge 0.022925; times are UTC, local
-- time is +08:00 (so 2025-11-30T16:00Z is local 2025-12-01 00:00, month
-- 2025-12, and 2025-12-31T16:00Z is local 2026-01-01, year 2026).
-- Programmes: gansu-domestic-ai (P1, rate 0.4 x share, cap 50 CNY per
-- tenant per year) and east-west-compute (P2, rate 0.1, energy+demand, no
-- cap).

INSERT INTO tariff_versions (name, effective, hash, label, text) VALUES
    ('gansu-large-industrial', '2025-01-01', '1a2b3c4d',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 'utc_offset = +08:00' || chr(10)),
    ('guizhou-large-industrial', '2025-01-01', '0f1e2d3c',
     'guizhou-large-industrial@2025-01-01#0f1e2d3c', 'utc_offset = +08:00' || chr(10));

INSERT INTO programme_caps (programme, cap_cny_per_year) VALUES ('gansu-domestic-ai', 50.0000);

INSERT INTO billing_rows (tenant, cluster, site, province, interval_start, interval_end, month,
                          kind, revision, period, kwh, price, surcharge_rate, energy_charge,
                          surcharge, subsidy, net, domestic_share, programme, tariff_version,
                          missing_s)
VALUES
    -- B1: 100 kWh valley: energy 100 x 0.2481 = 24.8100, surcharge 2.2925;
    -- P1 0.4 x 24.8100 = 9.9240, P2 0.1 x 24.8100 = 2.4810, subsidy 12.4050;
    -- net 24.8100 + 2.2925 - 12.4050 = 14.6975
    ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-03T02:00Z', '2025-11-03T02:15Z',
     '2025-11-01', 'interval', 0, 'valley', 100.000000, 0.248100, 0.022925, 24.8100, 2.2925,
     12.4050, 14.6975, 1.000000, 'gansu-domestic-ai,east-west-compute',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 0),
    -- B2: 10 kWh peak, 120 meter-seconds missing: energy 7.4430; surcharge
    -- 0.22925 -> 0.2292 (tie, even); P1 2.9772, P2 0.7443, subsidy 3.7215;
    -- net 7.4430 + 0.2292 - 3.7215 = 3.9507
    ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-03T10:00Z', '2025-11-03T10:15Z',
     '2025-11-01', 'interval', 0, 'peak', 10.000000, 0.744300, 0.022925, 7.4430, 0.2292,
     3.7215, 3.9507, 1.000000, 'gansu-domestic-ai,east-west-compute',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 120),
    -- B3, adjusting B1: 102 kWh now: energy 25.3062 - 24.8100 = 0.4962;
    -- surcharge 2.33835 -> 2.3384, - 2.2925 = 0.0459; P1 10.1225 - 9.9240 =
    -- 0.1985, P2 2.5306 - 2.4810 = 0.0496, subsidy 0.2481;
    -- net 0.4962 + 0.0459 - 0.2481 = 0.2940
    ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-03T02:00Z', '2025-11-03T02:15Z',
     '2025-11-01', 'adjustment', 1, 'valley', 2.000000, 0.248100, 0.022925, 0.4962, 0.0459,
     0.2481, 0.2940, 1.000000, 'gansu-domestic-ai,east-west-compute',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 0),
    -- B4, adjusting B2: 6 kWh now, the gap filled: energy 4.4658 - 7.4430 =
    -- -2.9772; surcharge 0.13755 -> 0.1376, - 0.2292 = -0.0916; P1 1.7863 -
    -- 2.9772 = -1.1909, P2 0.4466 - 0.7443 = -0.2977, subsidy -1.4886;
    -- net -2.9772 - 0.0916 + 1.4886 = -1.5802; missing_s 0 - 120 = -120
    ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-03T10:00Z', '2025-11-03T10:15Z',
     '2025-11-01', 'adjustment', 1, 'peak', -4.000000, 0.744300, 0.022925, -2.9772, -0.0916,
     -1.4886, -1.5802, 1.000000, 'gansu-domestic-ai,east-west-compute',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', -120),
    -- B5: qy-a02, 50 kWh valley, share 0.8: energy 12.4050; surcharge
    -- 1.14625 -> 1.1462 (tie, even); P1 0.4 x 0.8 x 12.4050 = 3.9696 (P2
    -- does not take this cluster); net 12.4050 + 1.1462 - 3.9696 = 9.5816
    ('bytedance', 'qy-a02', 'qingyang-1', 'gansu', '2025-11-10T04:00Z', '2025-11-10T04:15Z',
     '2025-11-01', 'interval', 0, 'valley', 50.000000, 0.248100, 0.022925, 12.4050, 1.1462,
     3.9696, 9.5816, 0.800000, 'gansu-domestic-ai',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 0),
    -- B6: gy-b01 in Guizhou (no programme), 0.25 kWh flat at 0.500000:
    -- energy 0.1250, surcharge 0.00573125 -> 0.0057, net 0.1307
    ('bytedance', 'gy-b01', 'guian-1', 'guizhou', '2025-11-05T06:00Z', '2025-11-05T06:15Z',
     '2025-11-01', 'interval', 0, 'flat', 0.250000, 0.500000, 0.022925, 0.1250, 0.0057,
     0.0000, 0.1307, 0.000000, NULL, 'guizhou-large-industrial@2025-01-01#0f1e2d3c', 0),
    -- B7: local 2025-12-01 00:00, 100 kWh flat: energy 49.6200, surcharge
    -- 2.2925; P1 19.8480, P2 4.9620, subsidy 24.8100; net 27.1025
    ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-30T16:00Z', '2025-11-30T16:15Z',
     '2025-12-01', 'interval', 0, 'flat', 100.000000, 0.496200, 0.022925, 49.6200, 2.2925,
     24.8100, 27.1025, 1.000000, 'gansu-domestic-ai,east-west-compute',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 0),
    -- B8: local 2026-01-01 00:00, the same amounts as B7, year 2026
    ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-12-31T16:00Z', '2025-12-31T16:15Z',
     '2026-01-01', 'interval', 0, 'flat', 100.000000, 0.496200, 0.022925, 49.6200, 2.2925,
     24.8100, 27.1025, 1.000000, 'gansu-domestic-ai,east-west-compute',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 0),
    -- B9: another tenant at the same site, the same interval as B1: P1
    -- only, 9.9240; net 24.8100 + 2.2925 - 9.9240 = 17.1785
    ('tencent', 'qy-t01', 'qingyang-1', 'gansu', '2025-11-03T02:00Z', '2025-11-03T02:15Z',
     '2025-11-01', 'interval', 0, 'valley', 100.000000, 0.248100, 0.022925, 24.8100, 2.2925,
     9.9240, 17.1785, 1.000000, 'gansu-domestic-ai',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 0);

INSERT INTO demand_charges (tenant, cluster, site, province, month, basis, max_kw,
                            max_interval_start, billing_kw, charge, subsidy, net, programme,
                            tariff_version, kind, revision)
VALUES
    -- D1: qy-a01 November, max_demand at 33 CNY/kW: B1's 100 kWh / 0.25 h =
    -- 400 kW, charge 13200.0000; P2 0.1 x 13200 = 1320.0000; net 11880.0000
    ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-01', 'max_demand', 400.000000,
     '2025-11-03T02:00Z', 400.000000, 13200.0000, 1320.0000, 11880.0000, 'east-west-compute',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 'month', 0),
    -- D2, adjusting D1 after B3: 408 kW, charge 13464 - 13200 = 264.0000;
    -- P2 1346.4 - 1320 = 26.4000; net 237.6000
    ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-01', 'max_demand', 408.000000,
     '2025-11-03T02:00Z', 408.000000, 264.0000, 26.4000, 237.6000, 'east-west-compute',
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 'adjustment', 1),
    -- D3: qy-a02 November, capacity: 12500 kVA x 22.6 = 282500.0000
    ('bytedance', 'qy-a02', 'qingyang-1', 'gansu', '2025-11-01', 'capacity', 200.000000,
     '2025-11-10T04:00Z', 12500.000000, 282500.0000, 0.0000, 282500.0000, NULL,
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 'month', 0),
    -- D4: qy-a02 October: a cluster-month with a demand row only
    ('bytedance', 'qy-a02', 'qingyang-1', 'gansu', '2025-10-01', 'capacity', 180.000000,
     '2025-10-20T01:00Z', 12500.000000, 282500.0000, 0.0000, 282500.0000, NULL,
     'gansu-large-industrial@2025-01-01#1a2b3c4d', 'month', 0);

-- Each row's subsidy lines (P1 = gansu-domestic-ai, P2 = east-west-compute).
INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount)
SELECT 'billing_rows', b.id, x.programme, b.tenant, x.year, x.amount
FROM (VALUES
    ('qy-a01', '2025-11-03T02:00Z'::timestamptz, 0, 'gansu-domestic-ai', 2025, 9.9240),
    ('qy-a01', '2025-11-03T02:00Z', 0, 'east-west-compute', 2025, 2.4810),
    ('qy-a01', '2025-11-03T10:00Z', 0, 'gansu-domestic-ai', 2025, 2.9772),
    ('qy-a01', '2025-11-03T10:00Z', 0, 'east-west-compute', 2025, 0.7443),
    ('qy-a01', '2025-11-03T02:00Z', 1, 'gansu-domestic-ai', 2025, 0.1985),
    ('qy-a01', '2025-11-03T02:00Z', 1, 'east-west-compute', 2025, 0.0496),
    ('qy-a01', '2025-11-03T10:00Z', 1, 'gansu-domestic-ai', 2025, -1.1909),
    ('qy-a01', '2025-11-03T10:00Z', 1, 'east-west-compute', 2025, -0.2977),
    ('qy-a02', '2025-11-10T04:00Z', 0, 'gansu-domestic-ai', 2025, 3.9696),
    ('qy-a01', '2025-11-30T16:00Z', 0, 'gansu-domestic-ai', 2025, 19.8480),
    ('qy-a01', '2025-11-30T16:00Z', 0, 'east-west-compute', 2025, 4.9620),
    ('qy-a01', '2025-12-31T16:00Z', 0, 'gansu-domestic-ai', 2026, 19.8480),
    ('qy-a01', '2025-12-31T16:00Z', 0, 'east-west-compute', 2026, 4.9620),
    ('qy-t01', '2025-11-03T02:00Z', 0, 'gansu-domestic-ai', 2025, 9.9240)
) AS x(cluster, interval_start, revision, programme, year, amount)
JOIN billing_rows AS b USING (cluster, interval_start, revision)
UNION ALL
SELECT 'demand_charges', d.id, x.programme, d.tenant, x.year, x.amount
FROM (VALUES
    ('qy-a01', '2025-11-01'::date, 0, 'east-west-compute', 2025, 1320.0000),
    ('qy-a01', '2025-11-01', 1, 'east-west-compute', 2025, 26.4000)
) AS x(cluster, month, revision, programme, year, amount)
JOIN demand_charges AS d USING (cluster, month, revision);

SELECT pg_temp.check((SELECT count(*) FROM billing_rows) = 9
                     AND (SELECT count(*) FROM demand_charges) = 4
                     AND (SELECT count(*) FROM subsidy_lines) = 16,
                     'fixture: 9 billing rows, 4 demand rows, 16 subsidy lines');

-- The audit every ledger should pass: a row's subsidy is the sum of its
-- lines, and a row has lines exactly when it names a programme.
SELECT pg_temp.check(bool_and(r.subsidy = coalesce(l.amount, 0)
                              AND (r.programme IS NULL) = (l.amount IS NULL)),
                     'fixture: each row''s subsidy is the sum of its subsidy lines')
FROM (SELECT 'billing_rows' AS row_table, id, subsidy, programme FROM billing_rows
      UNION ALL
      SELECT 'demand_charges', id, subsidy, programme FROM demand_charges) AS r
LEFT JOIN (SELECT row_table, row_id, sum(amount) AS amount
           FROM subsidy_lines GROUP BY row_table, row_id) AS l
    ON l.row_table = r.row_table AND l.row_id = r.id;

------------------------------------------------------------------------------
-- monthly_statements: every cluster-month, to the fen.

CREATE TEMP TABLE want_statements (tenant text, cluster text, province text, month date,
                                   kwh text, energy_charge text, surcharge text,
                                   demand_charge text, subsidy text, net text);
INSERT INTO want_statements VALUES
    -- qy-a01 November: B1-B4 and D1-D2.
    -- kwh 100 + 10 + 2 - 4 = 108.000000
    -- energy 24.8100 + 7.4430 + 0.4962 - 2.9772 = 29.7720 -> 29.77
    -- surcharge 2.2925 + 0.2292 + 0.0459 - 0.0916 = 2.4760 -> 2.48
    -- demand 13200.0000 + 264.0000 = 13464.00
    -- subsidy 12.4050 + 3.7215 + 0.2481 - 1.4886 + 1320 + 26.4 = 1361.2860 -> 1361.29
    -- net 14.6975 + 3.9507 + 0.2940 - 1.5802 + 11880 + 237.6 = 12134.9620 -> 12134.96
    ('bytedance', 'qy-a01', 'gansu', '2025-11-01', '108.000000', '29.77', '2.48', '13464.00',
     '1361.29', '12134.96'),
    -- qy-a01 December (B7) and January (B8): 49.6200, 2.2925 -> 2.29,
    -- subsidy 24.8100, net 27.1025 -> 27.10
    ('bytedance', 'qy-a01', 'gansu', '2025-12-01', '100.000000', '49.62', '2.29', '0.00',
     '24.81', '27.10'),
    ('bytedance', 'qy-a01', 'gansu', '2026-01-01', '100.000000', '49.62', '2.29', '0.00',
     '24.81', '27.10'),
    -- qy-a02 October: D4 only
    ('bytedance', 'qy-a02', 'gansu', '2025-10-01', '0.000000', '0.00', '0.00', '282500.00',
     '0.00', '282500.00'),
    -- qy-a02 November: B5 and D3; energy 12.4050 -> 12.40 (a tie: even, where
    -- round() says 12.41); surcharge 1.1462 -> 1.15; subsidy 3.9696 -> 3.97;
    -- net 9.5816 + 282500 = 282509.5816 -> 282509.58
    ('bytedance', 'qy-a02', 'gansu', '2025-11-01', '50.000000', '12.40', '1.15', '282500.00',
     '3.97', '282509.58'),
    -- gy-b01 November: B6 only (billing rows, no demand row yet); energy
    -- 0.1250 -> 0.12 (tie, even); surcharge 0.0057 -> 0.01; net 0.1307 -> 0.13
    ('bytedance', 'gy-b01', 'guizhou', '2025-11-01', '0.250000', '0.12', '0.01', '0.00',
     '0.00', '0.13'),
    -- qy-t01 November: B9; surcharge 2.2925 -> 2.29; subsidy 9.9240 -> 9.92;
    -- net 17.1785 -> 17.18
    ('tencent', 'qy-t01', 'gansu', '2025-11-01', '100.000000', '24.81', '2.29', '0.00',
     '9.92', '17.18');

SELECT pg_temp.check(
    (g.kwh::text, g.energy_charge::text, g.surcharge::text, g.demand_charge::text,
     g.subsidy::text, g.net::text)
    IS NOT DISTINCT FROM (w.kwh, w.energy_charge, w.surcharge, w.demand_charge, w.subsidy, w.net),
    format('monthly_statements %s %s %s: kwh %s, energy %s, surcharge %s, demand %s, '
           'subsidy %s, net %s (got %s)', w.tenant, w.cluster, w.month, w.kwh, w.energy_charge,
           w.surcharge, w.demand_charge, w.subsidy, w.net, g))
FROM want_statements AS w
LEFT JOIN monthly_statements AS g USING (tenant, cluster, province, month)
ORDER BY w.month, w.tenant, w.cluster;

SELECT pg_temp.check(count(*) = 7, 'monthly_statements has no other rows (got ' || count(*) || ')')
FROM monthly_statements;

------------------------------------------------------------------------------
-- Days in service (003_service_days.sql): a prorated demand row says how it
-- was computed, monthly_statements shows its days, resubmit_dead_letter
-- knows both layouts of a demand letter. Undone at the end.

BEGIN;
INSERT INTO demand_charges (tenant, cluster, site, province, month, basis, max_kw,
                            max_interval_start, billing_kw, charge, subsidy, net, programme,
                            tariff_version, kind, revision, days_in_service, proration)
VALUES
    -- D6: h1 in service from 2026-01-17 at 10000 kW, Hubei 110 kV 39.0 CNY/kW:
    -- 15/30 x 390000.0000 = 195000.0000
    ('acme', 'h1', 'wuhan', 'hubei', '2026-01-01', 'max_demand', 10000.000000,
     '2026-01-16T16:00Z', 10000.000000, 195000.0000, 0.0000, 195000.0000, NULL,
     'hubei-110kv@2026-01-01#1a2b3c4d', 'month', 0, 15,
     '15/30 x 390000.0000 (2026-01-17..2026-01-31; billing_kw 10000.000000)'),
    -- D7, adjusting D6: max 11333.333332 kW, monthly 441999.9999, 15/30 of it
    -- 220999.99995 -> 221000.0000 (a tie, to even): +26000.0000
    ('acme', 'h1', 'wuhan', 'hubei', '2026-01-01', 'max_demand', 11333.333332,
     '2026-01-31T15:45Z', 11333.333332, 26000.0000, 0.0000, 26000.0000, NULL,
     'hubei-110kv@2026-01-01#1a2b3c4d', 'adjustment', 1, 15,
     '15/30 x 441999.9999 (2026-01-17..2026-01-31; billing_kw 11333.333332)');

SELECT pg_temp.check(row(demand_charge, demand_days)::text = '(221000.00,15)',
                     'monthly_statements: a prorated month shows its days in service (got '
                     || row(demand_charge, demand_days)::text || ')')
FROM monthly_statements WHERE cluster = 'h1';

SELECT pg_temp.check(count(*) = 7 AND bool_and(demand_days IS NULL),
                     'monthly_statements: whole months and months without demand have no days')
FROM monthly_statements WHERE cluster <> 'h1';

SELECT pg_temp.check(s = '23514', format('003: %s is refused: %s', what, s))
FROM (SELECT what, pg_temp.sqlstate_of(sql) AS s
      FROM (VALUES
        ('days_in_service without a proration', $q$UPDATE demand_charges SET proration = NULL
            WHERE cluster = 'h1'$q$),
        ('a proration without days_in_service', $q$UPDATE demand_charges SET
            proration = 'x' WHERE cluster = 'qy-a02'$q$),
        ('days_in_service 32', $q$UPDATE demand_charges SET days_in_service = 32
            WHERE cluster = 'h1'$q$)
      ) AS c(what, sql)) AS t;

-- Two refused demand rows, as the writer keeps them: one with the columns
-- of 003 (21 parameters), one written before it (19).
INSERT INTO dead_letters (row_table, fingerprint, sqlstate, message, params)
SELECT 'demand_charges', sha256(convert_to(l.name, 'UTF8')), '23514', 'test',
       (SELECT array_agg(convert_to(x, 'UTF8') ORDER BY i)
        FROM unnest(l.params) WITH ORDINALITY AS u(x, i))
FROM (VALUES
    ('new', ARRAY['acme', 'h2', 'wuhan', 'hubei', '2026-04-01', 'capacity', '10000.000000',
                  '2026-03-31T16:00:00Z', '15000.000000', '335500.0000', '33550.0000',
                  '301950.0000', 'hp', 'hubei-110kv@2026-01-01#1a2b3c4d', 'month', '0', '30',
                  '15/30 x 305000.0000 (2026-04-01..2026-04-15; billing_kw 12500.000000) + '
                  '15/30 x 366000.0000 (2026-04-16..2026-04-30; billing_kw 15000.000000)',
                  '2026', '{hp}', '{33550.0000}']),
    ('old', ARRAY['acme', 'h3', 'wuhan', 'hubei', '2026-04-01', 'capacity', '10000.000000',
                  '2026-03-31T16:00:00Z', '12500.000000', '305000.0000', '30500.0000',
                  '274500.0000', 'hp', 'hubei-110kv@2026-01-01#1a2b3c4d', 'month', '0',
                  '2026', '{hp}', '{30500.0000}'])
) AS l(name, params);

SELECT pg_temp.check(count(*) = 2, 'resubmit_dead_letter: both layouts of a demand letter')
FROM dead_letters AS l, LATERAL (SELECT resubmit_dead_letter(l.id)) AS r
WHERE l.message = 'test';

SELECT pg_temp.check(string_agg(format('%s %s %s %s %s', d.cluster, d.charge,
                                       coalesce(d.days_in_service::text, 'NULL'),
                                       coalesce(left(d.proration, 19), 'NULL'), s.amount), ', '
                                ORDER BY d.cluster) =
                     'h2 335500.0000 30 15/30 x 305000.0000 33550.0000, '
                     'h3 305000.0000 NULL NULL 30500.0000',
                     'resubmit_dead_letter: the days and proration of 003, and the subsidy lines')
FROM demand_charges AS d
JOIN subsidy_lines AS s ON s.row_table = 'demand_charges' AND s.row_id = d.id
WHERE d.cluster IN ('h2', 'h3');
ROLLBACK;

------------------------------------------------------------------------------
-- Quarantine releases (004_requeue.sql): tariffd requeue records, once per
-- sample, that it sent a quarantined sample back through pricing. The
-- inserts are the writer's (storage/pg.c release_sql); the read is the
-- requeue's (daemon/ledger_read.c quarantined_sql, unbounded). Undone at
-- the end.

BEGIN;
INSERT INTO quarantined_samples (cluster, meter, ts, ts_ns, value, kind, reason)
VALUES ('qy-a01', 'main', to_timestamp(1764554400), 1764554400000000000, 412.5, 'power',
        'no tariff version in force'),
       (NULL, NULL, to_timestamp(1764554401), 1764554401000000000, 0.1, NULL,
        'no tariff version in force'),
       ('qy-a02', 'm2', to_timestamp(1764554402), 1764554402000000000, 7, 'counter',
        'outside the cluster''s service dates');
CREATE TEMP TABLE q AS
SELECT id, row_number() OVER (ORDER BY id) AS n FROM quarantined_samples;

WITH ins AS (
    INSERT INTO quarantine_releases (quarantined_id, released_at)
    SELECT id, timestamptz 'epoch' + ('1767225600123456789'::bigint / 1000)
                                     * interval '1 microsecond'
    FROM q WHERE n = 1
    ON CONFLICT (quarantined_id) DO NOTHING RETURNING released_at)
SELECT pg_temp.check(count(*) = 1 AND min(released_at) = '2026-01-01T00:00:00.123456Z',
                     'a release is recorded, its time to the microsecond without a float')
FROM ins;

WITH ins AS (
    INSERT INTO quarantine_releases (quarantined_id, released_at)
    SELECT id, now() FROM q WHERE n = 1
    ON CONFLICT (quarantined_id) DO NOTHING RETURNING id)
SELECT pg_temp.check(count(*) = 0, 'ON CONFLICT (quarantined_id) DO NOTHING: releasing a '
                                   'sample again (a replay) adds nothing')
FROM ins;

SELECT pg_temp.check(count(*) = 1 AND min(r.released_at) = '2026-01-01T00:00:00.123456Z',
                     'the first release and its time stay')
FROM quarantine_releases AS r;

SELECT pg_temp.check(s = want, format('004: %s is refused: %s', what, s))
FROM (SELECT what, want, pg_temp.sqlstate_of(sql) AS s
      FROM (VALUES
        ('a second release of one sample', '23505', $q$
            INSERT INTO quarantine_releases (quarantined_id, released_at)
            SELECT id, now() FROM pg_temp.q WHERE n = 1$q$),
        ('a release of a sample that is not quarantined', '23503', $q$
            INSERT INTO quarantine_releases (quarantined_id, released_at)
            VALUES ((SELECT max(id) + 1 FROM quarantined_samples), now())$q$),
        ('a release without a time', '23502', $q$
            INSERT INTO quarantine_releases (quarantined_id, released_at)
            SELECT id, NULL FROM pg_temp.q WHERE n = 2$q$),
        ('a dead letter for another table', '23514', $q$
            INSERT INTO dead_letters (row_table, fingerprint, sqlstate, message, params)
            VALUES ('tariff_versions', sha256('y'::bytea), '23505', 'm', ARRAY[]::bytea[])$q$)
      ) AS c(what, want, sql)) AS t;

-- What tariffd requeue reads: the samples not released, in id order, NULL
-- cluster, meter and kind kept.
SELECT pg_temp.check(string_agg(format('%s %s %s %s %s', q.n, coalesce(s.cluster, 'NULL'),
                                       coalesce(s.kind, 'NULL'), s.value, s.reason), '; '
                                ORDER BY s.id) =
                     '2 NULL NULL 0.1 no tariff version in force; '
                     '3 qy-a02 counter 7 outside the cluster''s service dates',
                     'the requeue reads the samples not released, NULLs kept, in id order')
FROM quarantined_samples AS s JOIN q USING (id)
WHERE NOT EXISTS (SELECT FROM quarantine_releases AS r WHERE r.quarantined_id = s.id)
      AND (NULL::text IS NULL OR s.reason = NULL::text);

-- A refused release, as the writer keeps it (row_table, the two parameters
-- as text), goes back with resubmit_dead_letter; a letter for a release
-- that is already there is resolved without a second row.
INSERT INTO dead_letters (row_table, fingerprint, sqlstate, message, params)
SELECT 'quarantine_releases', sha256(convert_to('release ' || n, 'UTF8')), '23503', 'test',
       ARRAY[convert_to(id::text, 'UTF8'), convert_to('1767225600999999999', 'UTF8')]
FROM q WHERE n IN (1, 3);

SELECT pg_temp.check(string_agg((r.new_id IS NOT NULL)::text, ',' ORDER BY l.id) = 'false,true',
                     'resubmit_dead_letter: a release goes in once')
FROM dead_letters AS l, LATERAL (SELECT resubmit_dead_letter(l.id) AS new_id) AS r
WHERE l.row_table = 'quarantine_releases';

SELECT pg_temp.check(count(*) = 2 AND bool_and(resolved_at IS NOT NULL),
                     'resubmit_dead_letter: both release letters are resolved')
FROM dead_letters WHERE row_table = 'quarantine_releases';

SELECT pg_temp.check(string_agg(q.n || ' ' || r.released_at, ', ' ORDER BY q.n) =
                     '1 2026-01-01 00:00:00.123456+00, 3 2026-01-01 00:00:00.999999+00',
                     'resubmit_dead_letter: the release of sample 3 at its time')
FROM quarantine_releases AS r JOIN q ON q.id = r.quarantined_id;
ROLLBACK;

------------------------------------------------------------------------------
-- monthly_by_period: billing rows only, per period.

CREATE TEMP TABLE want_by_period (tenant text, cluster text, month date, period text,
                                  kwh text, energy_charge text);
INSERT INTO want_by_period VALUES
    -- B1 + B3: 100 + 2 = 102.000000; 24.8100 + 0.4962 = 25.3062 -> 25.31
    ('bytedance', 'qy-a01', '2025-11-01', 'valley', '102.000000', '25.31'),
    -- B2 + B4: 10 - 4 = 6.000000; 7.4430 - 2.9772 = 4.4658 -> 4.47
    ('bytedance', 'qy-a01', '2025-11-01', 'peak', '6.000000', '4.47'),
    ('bytedance', 'qy-a01', '2025-12-01', 'flat', '100.000000', '49.62'),
    ('bytedance', 'qy-a01', '2026-01-01', 'flat', '100.000000', '49.62'),
    -- B5: 12.4050 -> 12.40 (tie, even)
    ('bytedance', 'qy-a02', '2025-11-01', 'valley', '50.000000', '12.40'),
    -- B6: 0.1250 -> 0.12 (tie, even)
    ('bytedance', 'gy-b01', '2025-11-01', 'flat', '0.250000', '0.12'),
    ('tencent', 'qy-t01', '2025-11-01', 'valley', '100.000000', '24.81');

SELECT pg_temp.check(
    (g.kwh::text, g.energy_charge::text) IS NOT DISTINCT FROM (w.kwh, w.energy_charge),
    format('monthly_by_period %s %s %s %s: kwh %s, energy %s (got %s)', w.tenant, w.cluster,
           w.month, w.period, w.kwh, w.energy_charge, g))
FROM want_by_period AS w
LEFT JOIN monthly_by_period AS g USING (tenant, cluster, month, period)
ORDER BY w.month, w.tenant, w.cluster, w.period;

SELECT pg_temp.check(count(*) = 7, 'monthly_by_period has no other rows (got ' || count(*) || ')')
FROM monthly_by_period;

------------------------------------------------------------------------------
-- subsidy_by_programme: per programme, tenant, year and month, with what is
-- left of the yearly cap after that month.

CREATE TEMP TABLE want_subsidy (programme text, tenant text, year integer, month date,
                                subsidy text, cap_remaining text);
INSERT INTO want_subsidy VALUES
    -- P1 bytedance November 2025: 9.9240 + 2.9772 + 0.1985 - 1.1909 + 3.9696
    -- = 15.8784 -> 15.88; cap 50 - 15.8784 = 34.1216 -> 34.12
    ('gansu-domestic-ai', 'bytedance', 2025, '2025-11-01', '15.88', '34.12'),
    -- December: 19.8480 -> 19.85; 50 - (15.8784 + 19.8480) = 14.2736 -> 14.27
    ('gansu-domestic-ai', 'bytedance', 2025, '2025-12-01', '19.85', '14.27'),
    -- January 2026: a new year, a new cap: 50 - 19.8480 = 30.1520 -> 30.15
    ('gansu-domestic-ai', 'bytedance', 2026, '2026-01-01', '19.85', '30.15'),
    -- another tenant, its own cap: 50 - 9.9240 = 40.0760 -> 40.08
    ('gansu-domestic-ai', 'tencent', 2025, '2025-11-01', '9.92', '40.08'),
    -- P2 has no cap: 2.4810 + 0.7443 + 0.0496 - 0.2977 + 1320 + 26.4 (the
    -- demand rows) = 1349.3772 -> 1349.38
    ('east-west-compute', 'bytedance', 2025, '2025-11-01', '1349.38', NULL),
    ('east-west-compute', 'bytedance', 2025, '2025-12-01', '4.96', NULL),
    ('east-west-compute', 'bytedance', 2026, '2026-01-01', '4.96', NULL);

SELECT pg_temp.check(
    (g.subsidy::text, g.cap_remaining::text) IS NOT DISTINCT FROM (w.subsidy, w.cap_remaining),
    format('subsidy_by_programme %s %s %s: subsidy %s, cap_remaining %s (got %s)', w.programme,
           w.tenant, w.month, w.subsidy, coalesce(w.cap_remaining, 'NULL'), g))
FROM want_subsidy AS w
LEFT JOIN subsidy_by_programme AS g USING (programme, tenant, year, month)
ORDER BY w.programme, w.tenant, w.month;

SELECT pg_temp.check(count(*) = 7, 'subsidy_by_programme has no other rows (got ' || count(*) || ')')
FROM subsidy_by_programme;

-- A cap that names a tenant applies to that tenant only.
BEGIN;
UPDATE programme_caps SET tenant = 'tencent' WHERE programme = 'gansu-domestic-ai';
SELECT pg_temp.check(
    string_agg(tenant || ' ' || month || ' ' || coalesce(cap_remaining::text, 'NULL'), ', '
               ORDER BY tenant, month) =
    'bytedance 2025-11-01 NULL, bytedance 2025-12-01 NULL, bytedance 2026-01-01 NULL, '
    'tencent 2025-11-01 40.08',
    'a programme_caps row with a tenant caps that tenant only')
FROM subsidy_by_programme
WHERE programme = 'gansu-domestic-ai';
ROLLBACK;

------------------------------------------------------------------------------
-- Keys and constraints: replays cannot double-bill.

SELECT pg_temp.check(s = '23505', 'a duplicate (cluster, interval_start, revision) is rejected: '
                                  || s)
FROM (SELECT pg_temp.sqlstate_of($q$
    INSERT INTO billing_rows (tenant, cluster, site, province, interval_start, interval_end,
                              month, kind, revision, period, kwh, price, surcharge_rate,
                              energy_charge, surcharge, subsidy, net, domestic_share,
                              programme, tariff_version, missing_s)
    VALUES ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-03T02:00Z',
            '2025-11-03T02:15Z', '2025-11-01', 'interval', 0, 'valley', 1.000000, 0.248100,
            0.022925, 0.2481, 0.0229, 0.0000, 0.2710, 1.000000, NULL, 'x@2025-01-01#00000000',
            0)$q$) AS s) AS t;

-- The daemon's insert: ON CONFLICT (cluster, interval_start, revision) DO
-- NOTHING inserts nothing on a replay, and the first row stays.
WITH ins AS (
    INSERT INTO billing_rows (tenant, cluster, site, province, interval_start, interval_end,
                              month, kind, revision, period, kwh, price, surcharge_rate,
                              energy_charge, surcharge, subsidy, net, domestic_share,
                              programme, tariff_version, missing_s)
    VALUES ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-03T02:00Z',
            '2025-11-03T02:15Z', '2025-11-01', 'interval', 0, 'valley', 1.000000, 0.248100,
            0.022925, 0.2481, 0.0229, 0.0000, 0.2710, 1.000000, NULL, 'x@2025-01-01#00000000',
            0)
    ON CONFLICT (cluster, interval_start, revision) DO NOTHING
    RETURNING id)
SELECT pg_temp.check(count(*) = 0, 'ON CONFLICT (cluster, interval_start, revision) DO NOTHING '
                                   'returns no row on a replay')
FROM ins;

SELECT pg_temp.check(count(*) = 9 AND sum(kwh) FILTER (WHERE cluster = 'qy-a01'
                                                       AND interval_start = '2025-11-03T02:00Z'
                                                       AND revision = 0) = 100,
                     'the replay inserted nothing and left the first row as it was')
FROM billing_rows;

SELECT pg_temp.check(s = '00000', 'the same key with the next revision, or another cluster, '
                                  'is accepted: ' || s)
FROM (SELECT pg_temp.sqlstate_of($q$
    INSERT INTO billing_rows (tenant, cluster, site, province, interval_start, interval_end,
                              month, kind, revision, period, kwh, price, surcharge_rate,
                              energy_charge, surcharge, subsidy, net, domestic_share,
                              programme, tariff_version, missing_s)
    VALUES ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-03T02:00Z',
            '2025-11-03T02:15Z', '2025-11-01', 'adjustment', 2, 'valley', 1.000000, 0.248100,
            0.022925, 0.2481, 0.0229, 0.0000, 0.2710, 1.000000, NULL, 'x@2025-01-01#00000000', 0),
           ('bytedance', 'qy-a09', 'qingyang-1', 'gansu', '2025-11-03T02:00Z',
            '2025-11-03T02:15Z', '2025-11-01', 'interval', 0, 'valley', 1.000000, 0.248100,
            0.022925, 0.2481, 0.0229, 0.0000, 0.2710, 1.000000, NULL, 'x@2025-01-01#00000000', 0)
    $q$) AS s) AS t;

SELECT pg_temp.check(s = '23505', 'a duplicate (cluster, month, revision) demand row is '
                                  'rejected: ' || s)
FROM (SELECT pg_temp.sqlstate_of($q$
    INSERT INTO demand_charges (tenant, cluster, site, province, month, basis, max_kw,
                                max_interval_start, billing_kw, charge, subsidy, net, programme,
                                tariff_version, kind, revision)
    VALUES ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-01', 'max_demand', 1, NULL,
            1, 33.0000, 0, 33.0000, NULL, 'x@2025-01-01#00000000', 'month', 0)$q$) AS s) AS t;

WITH ins AS (
    INSERT INTO demand_charges (tenant, cluster, site, province, month, basis, max_kw,
                                max_interval_start, billing_kw, charge, subsidy, net, programme,
                                tariff_version, kind, revision)
    VALUES ('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2025-11-01', 'max_demand', 1, NULL,
            1, 33.0000, 0, 33.0000, NULL, 'x@2025-01-01#00000000', 'month', 0)
    ON CONFLICT (cluster, month, revision) DO NOTHING
    RETURNING id)
SELECT pg_temp.check(count(*) = 0, 'ON CONFLICT (cluster, month, revision) DO NOTHING returns '
                                   'no row on a replay')
FROM ins;

SELECT pg_temp.check(s = '23505', 'a second line of one programme on one row is rejected: ' || s)
FROM (SELECT pg_temp.sqlstate_of($q$
    INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount)
    SELECT row_table, row_id, programme, tenant, year, 1 FROM subsidy_lines LIMIT 1$q$) AS s)
    AS t;

SELECT pg_temp.check(s = want, format('%s is refused: %s', what, s))
FROM (SELECT what, want, pg_temp.sqlstate_of(sql) AS s
      FROM (VALUES
        ('an explicit id', '428C9', $q$
            INSERT INTO billing_rows (id, tenant, cluster, site, province, interval_start,
                interval_end, month, kind, revision, period, kwh, price, surcharge_rate,
                energy_charge, surcharge, subsidy, net, domestic_share, programme,
                tariff_version, missing_s)
            VALUES (1000, 'b', 'c', 's', 'p', '2025-11-01T00:00Z', '2025-11-01T00:15Z',
                '2025-11-01', 'interval', 0, 'flat', 0, 0, 0, 0, 0, 0, 0, 0, NULL, 'v', 0)$q$),
        ('kind interval with revision 1', '23514', $q$
            INSERT INTO billing_rows (tenant, cluster, site, province, interval_start,
                interval_end, month, kind, revision, period, kwh, price, surcharge_rate,
                energy_charge, surcharge, subsidy, net, domestic_share, programme,
                tariff_version, missing_s)
            VALUES ('b', 'c', 's', 'p', '2025-11-01T00:00Z', '2025-11-01T00:15Z',
                '2025-11-01', 'interval', 1, 'flat', 0, 0, 0, 0, 0, 0, 0, 0, NULL, 'v', 0)$q$),
        ('an adjustment with revision 0', '23514', $q$
            INSERT INTO billing_rows (tenant, cluster, site, province, interval_start,
                interval_end, month, kind, revision, period, kwh, price, surcharge_rate,
                energy_charge, surcharge, subsidy, net, domestic_share, programme,
                tariff_version, missing_s)
            VALUES ('b', 'c', 's', 'p', '2025-11-01T00:00Z', '2025-11-01T00:15Z',
                '2025-11-01', 'adjustment', 0, 'flat', 0, 0, 0, 0, 0, 0, 0, 0, NULL, 'v',
                0)$q$),
        ('net other than energy_charge + surcharge - subsidy', '23514', $q$
            INSERT INTO billing_rows (tenant, cluster, site, province, interval_start,
                interval_end, month, kind, revision, period, kwh, price, surcharge_rate,
                energy_charge, surcharge, subsidy, net, domestic_share, programme,
                tariff_version, missing_s)
            VALUES ('b', 'c', 's', 'p', '2025-11-01T00:00Z', '2025-11-01T00:15Z',
                '2025-11-01', 'interval', 0, 'flat', 1, 1, 0.02, 1.0000, 0.0200, 0.5000,
                0.5300, 1, 'x', 'v', 0)$q$),
        ('a month not on its first day', '23514', $q$
            INSERT INTO billing_rows (tenant, cluster, site, province, interval_start,
                interval_end, month, kind, revision, period, kwh, price, surcharge_rate,
                energy_charge, surcharge, subsidy, net, domestic_share, programme,
                tariff_version, missing_s)
            VALUES ('b', 'c', 's', 'p', '2025-11-03T00:00Z', '2025-11-03T00:15Z',
                '2025-11-03', 'interval', 0, 'flat', 0, 0, 0, 0, 0, 0, 0, 0, NULL, 'v', 0)$q$),
        ('a demand row with net other than charge - subsidy', '23514', $q$
            INSERT INTO demand_charges (tenant, cluster, site, province, month, basis, max_kw,
                max_interval_start, billing_kw, charge, subsidy, net, programme,
                tariff_version, kind, revision)
            VALUES ('b', 'c', 's', 'p', '2025-11-01', 'max_demand', 1, NULL, 1, 33, 1, 33,
                NULL, 'v', 'month', 0)$q$),
        ('a demand basis outside max_demand, capacity, contract', '23514', $q$
            INSERT INTO demand_charges (tenant, cluster, site, province, month, basis, max_kw,
                max_interval_start, billing_kw, charge, subsidy, net, programme,
                tariff_version, kind, revision)
            VALUES ('b', 'c', 's', 'p', '2025-11-01', 'peak', 1, NULL, 1, 33, 0, 33,
                NULL, 'v', 'month', 0)$q$),
        ('a subsidy line on another table', '23514', $q$
            INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount)
            VALUES ('quarantined_samples', 1, 'p', 't', 2025, 1)$q$),
        ('a tariff hash that is not 8 lower-case hex digits', '23514', $q$
            INSERT INTO tariff_versions (name, effective, hash, label, text)
            VALUES ('t', '2025-01-01', '1A2B3C4D', 't@2025-01-01#1A2B3C4D', '')$q$),
        ('a tariff label that does not end in the hash', '23514', $q$
            INSERT INTO tariff_versions (name, effective, hash, label, text)
            VALUES ('t', '2025-01-01', '1a2b3c4d', 't@2025-01-01#00000000', '')$q$)
      ) AS c(what, want, sql)) AS t;

------------------------------------------------------------------------------
-- Consuming the ledger incrementally (README.md, "Consuming the ledger
-- incrementally").

SELECT pg_temp.check(count(*) = 9 AND bool_and(id > prev), 'a consumer reading WHERE id > 0 '
                     'ORDER BY id LIMIT 1000 gets every row once, ids increasing')
FROM (SELECT id, coalesce(lag(id) OVER (ORDER BY id), 0) AS prev
      FROM (SELECT id FROM billing_rows WHERE id > 0 ORDER BY id LIMIT 1000) AS page) AS t;

SELECT pg_temp.check(count(*) = 0, 'the next page, after the largest id, is empty')
FROM billing_rows
WHERE id > (SELECT max(id) FROM billing_rows);

-- An interval's value is the sum over its revisions: B1 + B3.
SELECT pg_temp.check(sum(kwh)::text = '102.000000' AND sum(net)::text = '14.9915',
                     'summed over revisions, qy-a01 2025-11-03T02:00Z is 102.000000 kWh, '
                     'net 14.6975 + 0.2940 = 14.9915')
FROM billing_rows
WHERE cluster = 'qy-a01' AND interval_start = '2025-11-03T02:00Z';

------------------------------------------------------------------------------
-- The example queries of README.md ("Example queries"), verbatim.

-- What did ByteDance's Qingyang clusters cost in November 2025? qy-a01 and
-- qy-a02 (gy-b01 is in Guizhou, qy-t01 is Tencent's): the statements summed.
-- kwh 108 + 50 = 158.000000; energy 29.77 + 12.40 = 42.17; surcharge 2.48 +
-- 1.15 = 3.63; demand 13464.00 + 282500.00 = 295964.00; subsidy 1361.29 +
-- 3.97 = 1365.26; net 12134.96 + 282509.58 = 294644.54
SELECT pg_temp.check(row(q.*)::text =
    '(2,158.000000,42.17,3.63,295964.00,1365.26,294644.54)',
    'example: ByteDance''s Qingyang clusters in November 2025 (got ' || row(q.*)::text || ')')
FROM (
SELECT count(*) AS clusters, sum(kwh) AS kwh, sum(energy_charge) AS energy_charge,
       sum(surcharge) AS surcharge, sum(demand_charge) AS demand_charge,
       sum(subsidy) AS subsidy, sum(net) AS net
FROM tariffd.monthly_statements
WHERE tenant = 'bytedance' AND month = DATE '2025-11-01'
  AND cluster IN (SELECT cluster FROM tariffd.billing_rows
                  WHERE site = 'qingyang-1' AND month = DATE '2025-11-01'
                  UNION
                  SELECT cluster FROM tariffd.demand_charges
                  WHERE site = 'qingyang-1' AND month = DATE '2025-11-01')
) AS q;

-- How much of it did the Gansu programme pay? The lines of
-- gansu-domestic-ai on those clusters' November rows: 9.9240 + 2.9772 +
-- 0.1985 - 1.1909 + 3.9696 = 15.8784 -> 15.88
SELECT pg_temp.check(q.gansu_paid::text = '15.88',
                     'example: the Gansu programme paid 15.88 of it (got ' || q.gansu_paid || ')')
FROM (
SELECT tariffd.round_half_even(sum(l.amount), 2) AS gansu_paid
FROM tariffd.subsidy_lines AS l
LEFT JOIN tariffd.billing_rows AS b ON l.row_table = 'billing_rows' AND b.id = l.row_id
LEFT JOIN tariffd.demand_charges AS d ON l.row_table = 'demand_charges' AND d.id = l.row_id
WHERE l.programme = 'gansu-domestic-ai' AND l.tenant = 'bytedance'
  AND coalesce(b.site, d.site) = 'qingyang-1'
  AND coalesce(b.month, d.month) = DATE '2025-11-01'
) AS q;

-- The same from the view, for the whole tenant (all its Gansu sites), with
-- what is left of the cap.
SELECT pg_temp.check((q.subsidy::text, q.cap_remaining::text) = ('15.88', '34.12'),
                     'example: subsidy_by_programme for ByteDance, November 2025')
FROM (
SELECT subsidy, cap_remaining
FROM tariffd.subsidy_by_programme
WHERE programme = 'gansu-domestic-ai' AND tenant = 'bytedance' AND month = DATE '2025-11-01'
) AS q;

------------------------------------------------------------------------------
-- Least-privilege roles: the grants of README.md ("Roles: least privilege"),
-- with the scratch role names of run.sh.

RESET ROLE;
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"DBNAME" TO :"owner", :"writer", :"reader";
SET ROLE :"owner";

GRANT USAGE ON SCHEMA tariffd TO :"writer", :"reader";
GRANT SELECT ON tariffd.schema_migrations TO :"writer";
GRANT SELECT, INSERT ON tariffd.billing_rows, tariffd.demand_charges, tariffd.subsidy_lines,
    tariffd.tariff_versions TO :"writer";
GRANT INSERT ON tariffd.quarantined_samples TO :"writer";
-- tariffd requeue reads the samples not released yet and records releases.
GRANT SELECT ON tariffd.quarantined_samples TO :"writer";
GRANT SELECT, INSERT ON tariffd.quarantine_releases TO :"writer";
GRANT INSERT, DELETE ON tariffd.programme_caps TO :"writer";
GRANT SELECT, INSERT ON tariffd.dead_letters TO :"writer";
REVOKE EXECUTE ON FUNCTION tariffd.round_half_even(numeric, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tariffd.round_half_even(numeric, integer) TO :"writer", :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA tariffd TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA tariffd GRANT SELECT ON TABLES TO :"reader";

-- The writer, as storage/pg.c writes: its prepared statements, verbatim.
SET ROLE :"writer";

PREPARE billing AS
    WITH r AS (INSERT INTO billing_rows (tenant, cluster, site, province, interval_start,
    interval_end, month, kind, revision, period, kwh, price, surcharge_rate, energy_charge,
    surcharge, subsidy, net, domestic_share, programme, tariff_version, missing_s)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
    $19, $20, $21) ON CONFLICT (cluster, interval_start, revision) DO NOTHING RETURNING id),
    l AS (INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount)
    SELECT 'billing_rows', r.id, x.p, $1, $22, x.a FROM r, unnest($23::text[],
    $24::numeric[]) AS x(p, a) RETURNING 1) SELECT id FROM r;

PREPARE demand AS
    WITH r AS (INSERT INTO demand_charges (tenant, cluster, site, province, month, basis,
    max_kw, max_interval_start, billing_kw, charge, subsidy, net, programme, tariff_version,
    kind, revision, days_in_service, proration) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
    $10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT (cluster, month, revision) DO
    NOTHING RETURNING id),
    l AS (INSERT INTO subsidy_lines (row_table, row_id, programme, tenant, year, amount)
    SELECT 'demand_charges', r.id, x.p, $1, $19, x.a FROM r, unnest($20::text[],
    $21::numeric[]) AS x(p, a) RETURNING 1) SELECT id FROM r;

PREPARE quarantine AS
    INSERT INTO quarantined_samples (cluster, meter, ts, ts_ns, value, kind, reason)
    VALUES ($1, $2, to_timestamp($3::bigint / 1e9), $3, $4, $5, $6);

PREPARE release AS
    INSERT INTO quarantine_releases (quarantined_id, released_at)
    VALUES ($1, timestamptz 'epoch' + ($2::bigint / 1000) * interval '1 microsecond')
    ON CONFLICT (quarantined_id) DO NOTHING;

-- B10: qy-a01 local 2026-01-10 10:00, like B1 (twice: the replay is a no-op)
EXECUTE billing('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2026-01-10T02:00:00Z',
    '2026-01-10T02:15:00Z', '2026-01-01', 'interval', '0', 'valley', '100.000000', '0.248100',
    '0.022925', '24.8100', '2.2925', '12.4050', '14.6975', '1.000000',
    'gansu-domestic-ai,east-west-compute', 'gansu-large-industrial@2025-01-01#1a2b3c4d', '0',
    '2026', '{gansu-domestic-ai,east-west-compute}', '{9.9240,2.4810}') \g /dev/null
EXECUTE billing('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2026-01-10T02:00:00Z',
    '2026-01-10T02:15:00Z', '2026-01-01', 'interval', '0', 'valley', '100.000000', '0.248100',
    '0.022925', '24.8100', '2.2925', '12.4050', '14.6975', '1.000000',
    'gansu-domestic-ai,east-west-compute', 'gansu-large-industrial@2025-01-01#1a2b3c4d', '0',
    '2026', '{gansu-domestic-ai,east-west-compute}', '{9.9240,2.4810}') \g /dev/null
-- D5: qy-a01 January 2026 (after B8 and B10: 400 kW), P2 1320.0000
EXECUTE demand('bytedance', 'qy-a01', 'qingyang-1', 'gansu', '2026-01-01', 'max_demand',
    '400.000000', '2025-12-31T16:00:00Z', '400.000000', '13200.0000', '1320.0000', '11880.0000',
    'east-west-compute', 'gansu-large-industrial@2025-01-01#1a2b3c4d', 'month', '0', NULL, NULL,
    '2026', '{east-west-compute}', '{1320.0000}') \g /dev/null
EXECUTE quarantine('qy-a01', 'main', '1764554400123456789', '412.5', 'power',
    'no tariff version in force');

SELECT pg_temp.check((SELECT count(*) FROM billing_rows) = 10
                     AND (SELECT count(*) FROM demand_charges) = 5
                     AND (SELECT count(*) FROM subsidy_lines) = 19,
                     'writer: the daemon''s inserts add one billing row, one demand row and '
                     'their three subsidy lines; the replay adds nothing');

-- tariffd requeue: the writer's connection reads the sample and releases it
-- (twice: the replay is a no-op).
SELECT id AS released_id FROM quarantined_samples WHERE ts_ns = 1764554400123456789 \gset
EXECUTE release(:'released_id', '1767225600123456789');
EXECUTE release(:'released_id', '1767225600123456789');
SELECT pg_temp.check((SELECT count(*) FROM quarantine_releases) = 1
                     AND NOT EXISTS (SELECT FROM quarantined_samples AS q
                                     WHERE NOT EXISTS (SELECT FROM quarantine_releases AS r
                                                       WHERE r.quarantined_id = q.id)),
                     'writer: reads the quarantined samples and releases one once');

-- A row PostgreSQL refused, kept as the writer keeps it (storage/pg.c
-- dead_letter): the writer's INSERT privilege is enough, no sequence to be
-- granted (the id is an identity column).
INSERT INTO dead_letters (row_table, fingerprint, sqlstate, message, params)
    VALUES ('quarantined_samples', sha256('x'::bytea), '22021', 'invalid byte sequence',
            ARRAY['qy-a01'::bytea, '\x6dff'::bytea]) ON CONFLICT (fingerprint) DO NOTHING;
SELECT pg_temp.check((SELECT count(*) FROM dead_letters WHERE sqlstate = '22021') = 1,
                     'writer: keeps a refused row in dead_letters');

-- After its inserts, in the same transaction, the daemon notifies the
-- largest id (no privilege needed beyond SELECT on billing_rows).
SELECT pg_temp.check(t.payload = (SELECT max(id)::text FROM billing_rows),
                     'writer: sends NOTIFY tariffd_billing with the largest id: ' || t.payload)
FROM (SELECT coalesce((SELECT max(id) FROM billing_rows), 0)::text AS payload) AS t,
     LATERAL (SELECT pg_notify('tariffd_billing', t.payload)) AS n;

-- Caps recovered from subsidy_lines, as a daemon with an empty state_dir
-- does: P1 bytedance 2025 = 15.8784 + 19.8480 = 35.7264.
SELECT pg_temp.check(sum(amount) FILTER (WHERE tenant = 'bytedance'
                                         AND programme = 'gansu-domestic-ai'
                                         AND year = 2025)::text = '35.7264',
                     'writer: reads the consumed caps back from subsidy_lines')
FROM subsidy_lines;

-- Recording the config: tariff versions (ON CONFLICT DO NOTHING), the caps
-- replaced.
INSERT INTO tariff_versions (label, name, effective, hash, text)
VALUES ('gansu-large-industrial@2025-01-01#1a2b3c4d', 'gansu-large-industrial', '2025-01-01',
        '1a2b3c4d', 'changed?') ON CONFLICT (label) DO NOTHING;
DELETE FROM programme_caps;
INSERT INTO programme_caps (programme, cap_cny_per_year) VALUES ('gansu-domestic-ai', 50.0000);
SELECT pg_temp.check(true, 'writer: records tariff versions and replaces programme_caps');

SELECT pg_temp.check(s = '42501', format('writer: %s is denied: %s', what, s))
FROM (SELECT what, pg_temp.sqlstate_of(sql) AS s
      FROM (VALUES
        ('UPDATE billing_rows', 'UPDATE tariffd.billing_rows SET net = 0'),
        ('DELETE FROM billing_rows', 'DELETE FROM tariffd.billing_rows'),
        ('TRUNCATE billing_rows', 'TRUNCATE tariffd.billing_rows'),
        ('UPDATE demand_charges', 'UPDATE tariffd.demand_charges SET net = 0'),
        ('DELETE FROM subsidy_lines', 'DELETE FROM tariffd.subsidy_lines'),
        ('UPDATE quarantined_samples', 'UPDATE tariffd.quarantined_samples SET reason = '''''),
        ('DELETE FROM quarantine_releases', 'DELETE FROM tariffd.quarantine_releases'),
        ('UPDATE tariff_versions', 'UPDATE tariffd.tariff_versions SET text = '''''),
        ('CREATE TABLE in the schema', 'CREATE TABLE tariffd.x (i int)'),
        ('DROP VIEW', 'DROP VIEW tariffd.monthly_statements'),
        ('CREATE SCHEMA IF NOT EXISTS (the schema exists)',
         'CREATE SCHEMA IF NOT EXISTS tariffd')
      ) AS c(what, sql)) AS t;

-- The reader: the views and the tables, nothing else.
SET ROLE :"reader";

SELECT pg_temp.check((SELECT count(*) FROM tariffd.monthly_statements) = 7
                     AND (SELECT count(*) FROM tariffd.monthly_by_period) = 8
                     AND (SELECT count(*) FROM tariffd.subsidy_by_programme) = 7,
                     'reader: reads the three views (round_half_even granted)');

-- January 2026 now: P1 19.8480 + 9.9240 = 29.7720 -> 29.77, cap 50 - 29.7720
-- = 20.2280 -> 20.23; P2 4.9620 + 2.4810 + 1320 = 1327.4430 -> 1327.44
SELECT pg_temp.check(
    string_agg(programme || ' ' || subsidy || ' ' || coalesce(cap_remaining::text, 'NULL'), ', '
               ORDER BY programme) =
    'east-west-compute 1327.44 NULL, gansu-domestic-ai 29.77 20.23',
    'reader: the writer''s rows reach subsidy_by_programme (ByteDance, January 2026)')
FROM tariffd.subsidy_by_programme
WHERE tenant = 'bytedance' AND month = DATE '2026-01-01';

SELECT pg_temp.check(count(*) = 10, 'reader: consumes billing_rows WHERE id > 0 ORDER BY id')
FROM (SELECT * FROM tariffd.billing_rows WHERE id > 0 ORDER BY id LIMIT 1000) AS page;

SELECT pg_temp.check(s = '42501', format('reader: %s is denied: %s', what, s))
FROM (SELECT what, pg_temp.sqlstate_of(sql) AS s
      FROM (VALUES
        ('INSERT INTO billing_rows', $q$INSERT INTO tariffd.billing_rows (tenant, cluster, site,
            province, interval_start, interval_end, month, kind, revision, period, kwh, price,
            surcharge_rate, energy_charge, surcharge, subsidy, net, domestic_share, programme,
            tariff_version, missing_s)
            VALUES ('b', 'c', 's', 'p', '2025-11-01T00:00Z', '2025-11-01T00:15Z', '2025-11-01',
            'interval', 0, 'flat', 0, 0, 0, 0, 0, 0, 0, 0, NULL, 'v', 0)$q$),
        ('DELETE FROM programme_caps', 'DELETE FROM tariffd.programme_caps'),
        ('UPDATE subsidy_lines', 'UPDATE tariffd.subsidy_lines SET amount = 0')
      ) AS c(what, sql)) AS t;

-- A table a later migration adds is readable through the default privileges.
SET ROLE :"owner";
CREATE TABLE tariffd.later_migration (x int);
SET ROLE :"reader";
SELECT pg_temp.check(count(*) = 0, 'reader: reads a table created later by the owner')
FROM tariffd.later_migration;
RESET ROLE;
