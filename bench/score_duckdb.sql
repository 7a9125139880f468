-- The driving-score spec (../shared/spec/driving-score.md) in DuckDB SQL:
-- the peer of `pitwall score run` in bench/score_vs_duckdb.py, written
-- independently from the Rust code so that each checks the other.
-- Placeholders: {rentals} {telemetry} {as_of_ms} {grace_ms} {out}.

CREATE TEMP TABLE rentals AS
WITH raw AS (
  SELECT DISTINCT rental_id, member_id, car_id, epoch_ms(start_at) AS s, epoch_ms(end_at) AS e
  FROM read_parquet('{rentals}')
  WHERE coalesce(rental_id, '') <> '' AND coalesce(member_id, '') <> '' AND coalesce(car_id, '') <> ''
    AND start_at IS NOT NULL AND end_at IS NOT NULL
    AND end_at > start_at AND epoch_ms(end_at) - epoch_ms(start_at) <= 7 * 86400000::BIGINT
)
-- identical copies count once; differing rows sharing an id are all rejected
SELECT * FROM raw QUALIFY count(*) OVER (PARTITION BY rental_id) = 1;

CREATE TEMP TABLE considered AS SELECT * FROM rentals WHERE e <= {as_of_ms};

CREATE TEMP TABLE samples AS
WITH valid AS (
  SELECT car_id, epoch_ms(ts) AS ts, speed_kmh AS v, speed_limit_kmh AS lim
  FROM read_parquet('{telemetry}/**/*.parquet')
  WHERE coalesce(car_id, '') <> '' AND ts IS NOT NULL AND speed_kmh BETWEEN 0 AND 300
    AND (speed_limit_kmh IS NULL OR (speed_limit_kmh >= 0 AND NOT isinf(speed_limit_kmh) AND NOT isnan(speed_limit_kmh)))
    AND NOT isnan(speed_kmh)
), dedup AS (
  SELECT car_id, ts, min(v) AS v, first(lim ORDER BY v, lim NULLS LAST) AS lim
  FROM valid GROUP BY car_id, ts
)
SELECT r.rental_id, d.ts, d.v, d.lim
FROM dedup d JOIN considered r ON d.car_id = r.car_id AND d.ts BETWEEN r.s AND r.e;

CREATE TEMP TABLE features AS
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
  count(*) FILTER (v > 5) AS moving_s,
  count(*) FILTER (lim IS NOT NULL AND v > lim + 10) AS speeding_s,
  count(*) FILTER (lim IS NOT NULL AND v > lim + 40) AS excess_speeding_s,
  count(*) FILTER (ha AND NOT pha) AS harsh_accel_n,
  count(*) FILTER (hb AND NOT phb) AS harsh_brake_n,
  count(*) FILTER (hb AND NOT nhb AND vmin3 <= 5) AS unstable_stop_n
FROM r GROUP BY rental_id;

CREATE TEMP TABLE rental_scores AS
WITH j AS (
  SELECT c.rental_id, c.member_id, c.car_id, c.s, c.e,
    coalesce(f.samples, 0) AS samples,
    least(coalesce(f.samples, 0) / (floor((c.e - c.s) / 1000) + 1), 1.0) AS coverage,
    coalesce(f.distance_km, 0) AS distance_km, coalesce(f.moving_s, 0) AS moving_s,
    coalesce(f.speeding_s, 0) AS speeding_s, coalesce(f.excess_speeding_s, 0) AS excess_speeding_s,
    coalesce(f.harsh_accel_n, 0) AS harsh_accel_n, coalesce(f.harsh_brake_n, 0) AS harsh_brake_n,
    coalesce(f.unstable_stop_n, 0) AS unstable_stop_n
  FROM considered c LEFT JOIN features f USING (rental_id)
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
  CASE WHEN status = 'scored' THEN round(greatest(least(124 - 40 * 0.60 * pow(1.05, x_ha) * pow(1.08, x_hb)
       * pow(1.15, x_us) * pow(1.03, x_sp) * pow(1.12, x_xs), 100), 0), 1) END AS score
FROM x;

CREATE TEMP TABLE member_scores AS
WITH sc AS (
  SELECT * FROM rental_scores WHERE status = 'scored'
), elig AS (
  SELECT member_id, sum(distance_km) AS distance_km_total FROM sc GROUP BY member_id
), recent AS (
  SELECT * FROM sc WHERE e > {as_of_ms} - 365 * 86400000::BIGINT
  QUALIFY row_number() OVER (PARTITION BY member_id ORDER BY e DESC, rental_id) <= 10
), agg AS (
  SELECT member_id, round(sum(score * distance_km) / sum(distance_km), 1) AS score FROM recent GROUP BY member_id
)
SELECT m.member_id, coalesce(e.distance_km_total, 0) >= 100 AS eligible,
  CASE WHEN coalesce(e.distance_km_total, 0) >= 100 THEN a.score END AS score
FROM (SELECT DISTINCT member_id FROM rental_scores) m
LEFT JOIN elig e USING (member_id) LEFT JOIN agg a USING (member_id);

COPY (SELECT * FROM rental_scores ORDER BY rental_id) TO '{out}/rental_scores.parquet' (FORMAT parquet);
COPY (SELECT * FROM member_scores ORDER BY member_id) TO '{out}/member_scores.parquet' (FORMAT parquet);
