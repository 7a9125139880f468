-- The driving-score spec (../shared/spec/driving-score.md) in Spark SQL,
-- the way a team writes it without pitwall: window functions over the
-- samples. The peer of pitwall.spark in bench/spark_backfill.py; a port of
-- bench/score_duckdb.sql (Spark has no QUALIFY, and FILTER needs WHERE).
-- Samples meet rentals on (car, day) and then on time: an equi-join on the
-- car alone would pair every sample with every rental of its car.
-- Placeholders: {as_of_ms} {grace_ms}. Views `rentals_in`, `telemetry_in`
-- are registered by the caller. Statements are split on ';'.

CREATE OR REPLACE TEMP VIEW rentals AS
SELECT rental_id, member_id, car_id, s, e FROM (
  SELECT *, count(*) OVER (PARTITION BY rental_id) AS copies FROM (
    SELECT DISTINCT rental_id, member_id, car_id, unix_millis(start_at) AS s, unix_millis(end_at) AS e
    FROM rentals_in
    WHERE coalesce(rental_id, '') <> '' AND coalesce(member_id, '') <> '' AND coalesce(car_id, '') <> ''
      AND start_at IS NOT NULL AND end_at IS NOT NULL AND end_at > start_at
      AND unix_millis(end_at) - unix_millis(start_at) <= 7L * 86400000L))
WHERE copies = 1;

CREATE OR REPLACE TEMP VIEW considered AS SELECT * FROM rentals WHERE e <= {as_of_ms};

CREATE OR REPLACE TEMP VIEW rental_days AS
SELECT rental_id, car_id, s, e, day
FROM considered LATERAL VIEW explode(sequence(floor(s / 86400000), floor(e / 86400000))) d AS day;

CREATE OR REPLACE TEMP VIEW samples AS
WITH valid AS (
  SELECT car_id, unix_millis(ts) AS ts, speed_kmh AS v, speed_limit_kmh AS lim
  FROM telemetry_in
  WHERE coalesce(car_id, '') <> '' AND ts IS NOT NULL AND speed_kmh BETWEEN 0 AND 300 AND NOT isnan(speed_kmh)
    AND (speed_limit_kmh IS NULL OR (speed_limit_kmh >= 0 AND NOT isnan(speed_limit_kmh)
         AND speed_limit_kmh < double('inf')))
), dedup AS (
  -- the copy with the lowest speed, then a known limit, then the lowest limit
  SELECT car_id, ts, min(named_struct('v', v, 'unknown', lim IS NULL, 'lim', lim)) AS k
  FROM valid GROUP BY car_id, ts
)
SELECT r.rental_id, d.ts, d.k.v AS v, d.k.lim AS lim
FROM dedup d JOIN rental_days r
  ON d.car_id = r.car_id AND floor(d.ts / 86400000) = r.day AND d.ts BETWEEN r.s AND r.e;

CREATE OR REPLACE TEMP VIEW features AS
WITH p AS (
  SELECT rental_id, ts, v, lim, lag(ts) OVER w AS pts, lag(v) OVER w AS pv
  FROM samples WINDOW w AS (PARTITION BY rental_id ORDER BY ts)
), q AS (
  SELECT *, coalesce(ts - pts > 0 AND ts - pts <= 1500, false) AS adj,
         (v - pv) / ((ts - pts) / 1000.0) AS rate
  FROM p
), f AS (
  SELECT *, adj AND rate >= 10 AS ha, adj AND rate <= -10 AS hb FROM q
), r AS (
  SELECT *,
    lag(ha, 1, false) OVER w AS pha, lag(hb, 1, false) OVER w AS phb, lead(hb, 1, false) OVER w AS nhb,
    min(v) OVER (PARTITION BY rental_id ORDER BY ts RANGE BETWEEN CURRENT ROW AND 3000 FOLLOWING) AS vmin3
  FROM f WINDOW w AS (PARTITION BY rental_id ORDER BY ts)
)
SELECT rental_id,
  count(*) AS samples,
  sum(CASE WHEN adj THEN (pv + v) / 2 * ((ts - pts) / 1000.0) / 3600 ELSE 0 END) AS distance_km,
  count(*) FILTER (WHERE v > 5) AS moving_s,
  count(*) FILTER (WHERE lim IS NOT NULL AND v > lim + 10) AS speeding_s,
  count(*) FILTER (WHERE lim IS NOT NULL AND v > lim + 40) AS excess_speeding_s,
  count(*) FILTER (WHERE ha AND NOT pha) AS harsh_accel_n,
  count(*) FILTER (WHERE hb AND NOT phb) AS harsh_brake_n,
  count(*) FILTER (WHERE hb AND NOT nhb AND vmin3 <= 5) AS unstable_stop_n
FROM r GROUP BY rental_id;

CREATE OR REPLACE TEMP VIEW rental_scores AS
WITH j AS (
  SELECT c.rental_id, c.member_id, c.car_id, c.s, c.e,
    coalesce(f.samples, 0) AS samples,
    least(coalesce(f.samples, 0) / (floor((c.e - c.s) / 1000) + 1), 1.0) AS coverage,
    coalesce(f.distance_km, 0) AS distance_km, coalesce(f.moving_s, 0) AS moving_s,
    coalesce(f.speeding_s, 0) AS speeding_s, coalesce(f.excess_speeding_s, 0) AS excess_speeding_s,
    coalesce(f.harsh_accel_n, 0) AS harsh_accel_n, coalesce(f.harsh_brake_n, 0) AS harsh_brake_n,
    coalesce(f.unstable_stop_n, 0) AS unstable_stop_n
  FROM considered c LEFT JOIN features f ON c.rental_id = f.rental_id
), st AS (
  SELECT *, CASE
      WHEN coverage < 0.95 AND {as_of_ms} < e + {grace_ms} THEN 'pending'
      WHEN coverage < 0.95 AND coverage < 0.60 THEN 'unscorable'
      WHEN distance_km < 1.0 THEN 'unscorable'
      ELSE 'scored' END AS status
  FROM j
), x AS (
  SELECT *,
    CASE WHEN harsh_accel_n = 0 THEN 0 ELSE least(harsh_accel_n / distance_km * 100, 20) END AS x_ha,
    CASE WHEN harsh_brake_n = 0 THEN 0 ELSE least(harsh_brake_n / distance_km * 100, 20) END AS x_hb,
    CASE WHEN unstable_stop_n = 0 THEN 0 ELSE least(unstable_stop_n / distance_km * 100, 10) END AS x_us,
    CASE WHEN moving_s = 0 THEN 0 ELSE least(speeding_s / moving_s * 100, 30) END AS x_sp,
    CASE WHEN moving_s = 0 THEN 0 ELSE least(excess_speeding_s / moving_s * 100, 10) END AS x_xs
  FROM st
)
SELECT rental_id, member_id, car_id, s, e, status, samples, coverage, distance_km, moving_s, speeding_s,
  excess_speeding_s, harsh_accel_n, harsh_brake_n, unstable_stop_n,
  CASE WHEN status = 'scored' THEN round(greatest(least(124 - 40 * 0.60 * power(1.05, x_ha) * power(1.08, x_hb)
       * power(1.15, x_us) * power(1.03, x_sp) * power(1.12, x_xs), 100), 0), 1) END AS score
FROM x;

CREATE OR REPLACE TEMP VIEW member_scores AS
WITH sc AS (
  SELECT * FROM rental_scores WHERE status = 'scored'
), elig AS (
  SELECT member_id, sum(distance_km) AS distance_km_total FROM sc GROUP BY member_id
), recent AS (
  SELECT * FROM (
    SELECT *, row_number() OVER (PARTITION BY member_id ORDER BY e DESC, rental_id) AS k
    FROM sc WHERE e > {as_of_ms} - 365L * 86400000L)
  WHERE k <= 10
), agg AS (
  SELECT member_id, round(sum(score * distance_km) / sum(distance_km), 1) AS score FROM recent GROUP BY member_id
)
SELECT m.member_id, coalesce(e.distance_km_total, 0) >= 100 AS eligible,
  CASE WHEN coalesce(e.distance_km_total, 0) >= 100 THEN a.score END AS score
FROM (SELECT DISTINCT member_id FROM rental_scores) m
LEFT JOIN elig e ON m.member_id = e.member_id LEFT JOIN agg a ON m.member_id = a.member_id
