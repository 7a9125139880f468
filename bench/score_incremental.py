#!/usr/bin/env python3
"""Benchmark: one incremental hour of `pitwall score run --state` against
DuckDB SQL doing the same step on the same files, 2 threads each, same run.

The data (generated once with DuckDB, then reused):
  - rental results of a year (default 5 M rentals, 20,000 cars) as a
    rental_scores.parquet, seeded into a state with `pitwall score state
    import`; and the last month of them (a 1-month state);
  - one new hour of telemetry, hive `dt=/hour=` like the lake writes it,
    16 files: 10,000 rentals of 15 minutes, 900 samples each (9 M samples);
  - a rentals input of the new hour's rentals and the last 7 days' (what a
    "recent rentals" extract of the rentals table holds).

The step, on each side: evaluate the rentals not final yet from the new
partition, merge them into the results, and recompute every member's score
from the results. pitwall also commits its state; DuckDB writes its outputs.

Printed: wall time and peak RSS of each (measured from a lean launcher,
not from this process with DuckDB loaded), the ratio pitwall/DuckDB, the
same hour against the 1-month and the 12-month state, and what pitwall read
and wrote of its state (run.json's state_io). The agreement check exports
the state's snapshot after the run (untimed). Exit status 1 when the
two disagree on a member's score, 3 when a goal is missed (ratio <= 0.25,
peak RSS < 1 GiB, 12-month / 1-month <= 1.3, 3-year / 1-month <= 1.5,
import and export < 1 GiB), 0 otherwise.

A 3-year state (three times the results, of the same members: the year's
and two years before it) is the third point; `score state import` of each
state and `score state export` of the 3-year one are measured too.

    python3 bench/score_incremental.py                    # 5 M results, 9 M samples
    python3 bench/score_incremental.py --rentals 200000 --cars 2000 --new 1000   # a quick look
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# The new hour: 2026-11-01T10:00Z; as_of is its end.
NEW_HOUR_MS = 1_793_527_200_000
AS_OF_MS = NEW_HOUR_MS + HOUR_MS
AS_OF = "2026-11-01T11:00:00Z"
GRACE_MS = 4 * HOUR_MS
GIB = 1 << 30
MODEL = "psf-v1@1"
CARS = [20_000]


# A child forked from this process (DuckDB loaded: hundreds of MiB) counts
# the parent's resident pages in its ru_maxrss until it execs, so each side
# is started by a lean launcher: a fresh interpreter without site packages
# that forks the command and reports that child's own peak.
LAUNCHER = """
import json, os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps([time.perf_counter() - t, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status)]),
      file=sys.stderr)
"""


def run_measured(cmd, env=None):
    """Runs cmd; returns (seconds, peak RSS bytes, exit code) of that command alone."""
    p = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *map(str, cmd)], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    try:
        seconds, rss, code = json.loads(last)
    except ValueError:
        sys.exit(f"the launcher failed: {p.stderr}")
    return seconds, rss, code


def results_sql(lo, hi, yearly, years_back):
    """Rental results i in [lo, hi): car i % cars, member a hash of i (a pool
    of yearly // 10 members, whatever the years), ended uniformly over the
    year that ends `years_back` years before the new hour, 5-60 minutes
    long; 95 % scored."""
    start = NEW_HOUR_MS - 1000 - years_back * 365 * DAY_MS
    return f"""
      WITH g AS (
        SELECT i, {start} - (hash(i, 'end') % {365 * DAY_MS})::BIGINT AS e,
               (300 + hash(i, 'len') % 3300)::BIGINT AS secs,
               hash(i, 'st') % 100 AS st, (hash(i, 'sc') % 1000) / 10.0 AS sc
        FROM range({lo}, {hi}) t(i)
      )
      SELECT printf('r%010d', i) AS rental_id, printf('m%07d', hash(i, 'm') % {max(yearly // 10, 1)}) AS member_id,
             printf('car-%05d', i % {CARS[0]}) AS car_id,
             make_timestamptz((e - secs * 1000) * 1000) AS start_at, make_timestamptz(e * 1000) AS end_at,
             CASE WHEN st < 95 THEN 'scored' ELSE 'unscorable' END AS status,
             CASE WHEN st < 95 THEN NULL WHEN st < 98 THEN 'insufficient_coverage' ELSE 'too_short' END AS reason,
             secs + 1 AS samples, 1.0::DOUBLE AS coverage, (secs / 3600.0 * 45 * (1 + (hash(i, 'd') % 1000) / 7919.0))::DOUBLE AS distance_km,
             (secs * 0.8)::BIGINT AS moving_s, (hash(i, 'sp') % 60)::BIGINT AS speeding_s,
             (hash(i, 'xs') % 5)::BIGINT AS excess_speeding_s, (hash(i, 'ha') % 4)::BIGINT AS harsh_accel_n,
             (hash(i, 'hb') % 4)::BIGINT AS harsh_brake_n, (hash(i, 'us') % 3)::BIGINT AS unstable_stop_n,
             CASE WHEN st < 95 THEN sc END AS score,
             CASE WHEN st >= 95 THEN NULL WHEN sc >= 90 THEN 'EXCELLENT' WHEN sc >= 75 THEN 'GOOD'
                  WHEN sc >= 50 THEN 'FAIR' ELSE 'POOR' END AS grade,
             '{MODEL}' AS model
      FROM g"""


def generate_three_years(work, rentals):
    """A 3-year state's results: the year's, and two years before it with
    as many rentals each, of the same members (once; reused)."""
    path = work / "results_36m.parquet"
    if path.exists():
        return path
    import duckdb
    c = duckdb.connect()
    c.sql("SET threads = 2")
    older = " UNION ALL ".join(
        f"({results_sql(k * rentals, (k + 1) * rentals, rentals, k)})" for k in (1, 2))
    c.sql(f"""COPY (SELECT * FROM (SELECT * FROM read_parquet('{work / "results_12m.parquet"}') UNION ALL {older})
              ORDER BY rental_id) TO '{path}' (FORMAT parquet)""")
    return path


def generate(work, rentals, cars, new):
    """Results of a year, the new hour's telemetry and the rentals input."""
    import duckdb
    CARS[0] = cars
    c = duckdb.connect()
    c.sql("SET threads = 2")
    year = work / "results_12m.parquet"
    # Rental i: car i % cars, member a hash of i, ended uniformly over the
    # year before the new hour, 5-60 minutes long; 95 % scored.
    c.sql(f"CREATE TABLE results AS {results_sql(0, rentals, rentals, 0)}")
    c.sql(f"COPY (SELECT * FROM results ORDER BY rental_id) TO '{year}' (FORMAT parquet)")
    c.sql(f"""COPY (SELECT * FROM results WHERE epoch_ms(end_at) >= {NEW_HOUR_MS - 30 * DAY_MS} ORDER BY rental_id)
              TO '{work / "results_1m.parquet"}' (FORMAT parquet)""")
    # The new hour: `new` rentals of 15 minutes on distinct cars, ending in the hour.
    c.sql(f"""
      CREATE TABLE fresh AS
      SELECT printf('n%08d', k) AS rental_id, printf('m%07d', hash(k, 'nm') % {max(rentals // 10, 1)}) AS member_id,
             printf('car-%05d', k % {cars}) AS car_id,
             {NEW_HOUR_MS} + (hash(k, 'off') % (45 * 60))::BIGINT * 1000 AS s
      FROM range({new}) t(k)""")
    tel = work / "telemetry" / "dt=2026-11-01" / "hour=10"
    tel.mkdir(parents=True, exist_ok=True)
    c.sql("""
      CREATE TABLE samples AS
      SELECT f.car_id, make_timestamptz((f.s + j * 1000) * 1000) AS ts,
             greatest(0, 50 + 35 * sin(j / 40.0 + hash(f.rental_id) % 7) + (hash(f.rental_id, j) % 9) - 4)::DOUBLE AS speed_kmh,
             CASE WHEN hash(f.rental_id) % 3 = 0 THEN NULL ELSE 50.0 END::DOUBLE AS speed_limit_kmh,
             hash(f.car_id) % 16 AS shard
      FROM fresh f, range(900) r(j)""")
    for shard in range(16):
        c.sql(f"""COPY (SELECT car_id, ts, speed_kmh, speed_limit_kmh FROM samples WHERE shard = {shard} ORDER BY ts)
                  TO '{tel}/shard-{shard:02d}.parquet' (FORMAT parquet)""")
    c.sql(f"""
      COPY (
        SELECT rental_id, member_id, car_id, make_timestamptz(s * 1000) AS start_at,
               make_timestamptz((s + 899 * 1000) * 1000) AS end_at FROM fresh
        UNION ALL
        SELECT rental_id, member_id, car_id, start_at, end_at FROM results
        WHERE epoch_ms(end_at) >= {NEW_HOUR_MS - 7 * DAY_MS}
      ) TO '{work / "rentals.parquet"}' (FORMAT parquet)""")
    samples = c.sql("SELECT count(*) FROM samples").fetchall()[0][0]
    (work / "generated.json").write_text(json.dumps({"rentals": rentals, "cars": cars, "new": new,
                                                     "samples": samples}))


DUCKDB_STEP = """
SET threads = {threads};
-- The rentals not final yet: ended by as_of, not in the results table.
CREATE TEMP TABLE open_rentals AS
SELECT rental_id, member_id, car_id, epoch_ms(start_at) AS s, epoch_ms(end_at) AS e
FROM read_parquet('{work}/rentals.parquet') r
WHERE epoch_ms(end_at) <= {as_of_ms}
  AND NOT EXISTS (SELECT 1 FROM read_parquet('{results}') f WHERE f.rental_id = r.rental_id);
CREATE TEMP TABLE samples AS
WITH valid AS (
  SELECT car_id, epoch_ms(ts) AS ts, speed_kmh AS v, speed_limit_kmh AS lim
  FROM read_parquet('{work}/telemetry/dt=2026-11-01/hour=10/*.parquet')
  WHERE coalesce(car_id, '') <> '' AND ts IS NOT NULL AND speed_kmh BETWEEN 0 AND 300
), dedup AS (
  SELECT car_id, ts, min(v) AS v, first(lim ORDER BY v, lim NULLS LAST) AS lim FROM valid GROUP BY car_id, ts
)
SELECT r.rental_id, d.ts, d.v, d.lim FROM dedup d JOIN open_rentals r ON d.car_id = r.car_id AND d.ts BETWEEN r.s AND r.e;
CREATE TEMP TABLE features AS
WITH p AS (
  SELECT rental_id, ts, v, lim, lag(ts) OVER w AS pts, lag(v) OVER w AS pv
  FROM samples WINDOW w AS (PARTITION BY rental_id ORDER BY ts)
), q AS (
  SELECT *, coalesce(ts - pts > 0 AND ts - pts <= 1500, false) AS adj, (v - pv) / ((ts - pts) / 1000.0) AS rate FROM p
), f AS (SELECT *, adj AND rate >= 10 AS ha, adj AND rate <= -10 AS hb FROM q
), r AS (
  SELECT *, lag(ha, 1, false) OVER w AS pha, lag(hb, 1, false) OVER w AS phb, lead(hb, 1, false) OVER w AS nhb,
    min(v) OVER (PARTITION BY rental_id ORDER BY ts RANGE BETWEEN CURRENT ROW AND 3000 FOLLOWING) AS vmin3
  FROM f WINDOW w AS (PARTITION BY rental_id ORDER BY ts)
)
SELECT rental_id, count(*) AS samples,
  sum(CASE WHEN adj THEN (pv + v) / 2 * ((ts - pts) / 1000.0) / 3600 ELSE 0 END) AS distance_km,
  count(*) FILTER (v > 5) AS moving_s, count(*) FILTER (lim IS NOT NULL AND v > lim + 10) AS speeding_s,
  count(*) FILTER (lim IS NOT NULL AND v > lim + 40) AS excess_speeding_s,
  count(*) FILTER (ha AND NOT pha) AS harsh_accel_n, count(*) FILTER (hb AND NOT phb) AS harsh_brake_n,
  count(*) FILTER (hb AND NOT nhb AND vmin3 <= 5) AS unstable_stop_n
FROM r GROUP BY rental_id;
CREATE TEMP TABLE evaluated AS
WITH j AS (
  SELECT c.rental_id, c.member_id, c.s, c.e, coalesce(f.samples, 0) AS samples,
    least(coalesce(f.samples, 0) / (floor((c.e - c.s) / 1000) + 1), 1.0) AS coverage,
    coalesce(f.distance_km, 0) AS distance_km, coalesce(f.moving_s, 0) AS moving_s,
    coalesce(f.speeding_s, 0) AS speeding_s, coalesce(f.excess_speeding_s, 0) AS excess_speeding_s,
    coalesce(f.harsh_accel_n, 0) AS harsh_accel_n, coalesce(f.harsh_brake_n, 0) AS harsh_brake_n,
    coalesce(f.unstable_stop_n, 0) AS unstable_stop_n
  FROM open_rentals c LEFT JOIN features f USING (rental_id)
), st AS (
  SELECT *, CASE WHEN coverage < 0.95 AND {as_of_ms} < e + {grace_ms} THEN 'pending'
      WHEN coverage < 0.95 AND coverage < 0.60 THEN 'unscorable' WHEN distance_km < 1.0 THEN 'unscorable'
      ELSE 'scored' END AS status FROM j
), x AS (
  SELECT *,
    CASE WHEN harsh_accel_n = 0 THEN 0 ELSE least(harsh_accel_n / distance_km * 100, 20) END AS x_ha,
    CASE WHEN harsh_brake_n = 0 THEN 0 ELSE least(harsh_brake_n / distance_km * 100, 20) END AS x_hb,
    CASE WHEN unstable_stop_n = 0 THEN 0 ELSE least(unstable_stop_n / distance_km * 100, 10) END AS x_us,
    CASE WHEN moving_s = 0 THEN 0 ELSE least(speeding_s / moving_s * 100, 30) END AS x_sp,
    CASE WHEN moving_s = 0 THEN 0 ELSE least(excess_speeding_s / moving_s * 100, 10) END AS x_xs
  FROM st
)
SELECT rental_id, member_id, e, status, distance_km,
  CASE WHEN status = 'scored' THEN round(greatest(least(124 - 40 * 0.60 * pow(1.05, x_ha) * pow(1.08, x_hb)
       * pow(1.15, x_us) * pow(1.03, x_sp) * pow(1.12, x_xs), 100), 0), 1) END AS score
FROM x;
-- Every member from the results and the evaluated rentals.
CREATE TEMP TABLE all_results AS
SELECT rental_id, member_id, epoch_ms(end_at) AS e, status, distance_km, score FROM read_parquet('{results}')
UNION ALL SELECT rental_id, member_id, e, status, distance_km, score FROM evaluated;
COPY (
  WITH sc AS (SELECT * FROM all_results WHERE status = 'scored'),
  elig AS (SELECT member_id, sum(distance_km) AS d FROM sc GROUP BY member_id),
  recent AS (
    SELECT * FROM sc WHERE e > {as_of_ms} - 365 * 86400000::BIGINT
    QUALIFY row_number() OVER (PARTITION BY member_id ORDER BY e DESC, rental_id) <= 10
  ), agg AS (SELECT member_id, round(sum(score * distance_km) / sum(distance_km), 1) AS score FROM recent GROUP BY member_id)
  SELECT m.member_id, coalesce(e.d, 0) >= 100 AS eligible, CASE WHEN coalesce(e.d, 0) >= 100 THEN a.score END AS score
  FROM (SELECT DISTINCT member_id FROM all_results) m LEFT JOIN elig e USING (member_id) LEFT JOIN agg a USING (member_id)
  ORDER BY member_id
) TO '{out}/member_scores.parquet' (FORMAT parquet);
COPY (SELECT * FROM evaluated ORDER BY rental_id) TO '{out}/rental_scores.parquet' (FORMAT parquet);
"""


def duckdb_step(work, results, out, threads):
    script = out / "step.sql"
    script.write_text(DUCKDB_STEP.format(work=work, results=results, out=out, threads=threads,
                                         as_of_ms=AS_OF_MS, grace_ms=GRACE_MS))
    code = "import duckdb, sys; duckdb.connect().execute(open(sys.argv[1]).read())"
    return run_measured([sys.executable, "-c", code, str(script)])


def seeded(pitwall, work, months):
    """A state imported from the results once, kept as a template; the
    import's time and peak RSS are kept beside it (import.json)."""
    template = work / f"state-{months}m-template"
    figures = work / f"import-{months}m.json"
    if not (template / "log").exists():
        shutil.rmtree(template, ignore_errors=True)
        t, rss, code = run_measured([pitwall, "score", "state", "import", "--state", str(template), "--rental-results",
                                     str(work / f"results_{months}m.parquet"), "--as-of", "2026-11-01T10:00:00Z"])
        if code != 0:
            sys.exit(f"pitwall score state import failed with exit code {code}")
        figures.write_text(json.dumps({"seconds": t, "rss": rss}))
    return template, json.loads(figures.read_text()) if figures.exists() else None


def pitwall_step(pitwall, work, template, out, threads):
    state = work / f"state-run-{template.name}"
    shutil.rmtree(state, ignore_errors=True)
    shutil.copytree(template, state)
    gates = work / "gates.toml"
    gates.write_text("max_pending_ratio = 1.0\nmax_member_score_shift = 1000.0\nmax_member_score_psi = 1000.0\n")
    t, rss, code = run_measured([pitwall, "score", "run", "--state", str(state), "--rentals", str(work / "rentals.parquet"),
                                 "--telemetry", str(work / "telemetry"), "--as-of", AS_OF, "--out", str(out),
                                 "--threads", str(threads), "--gates", str(gates)],
                                env={**os.environ, "PITWALL_LOG": "warn"})
    if code != 0:
        sys.exit(f"pitwall score run --state failed with exit code {code}")
    return t, rss, state


def export(pitwall, state, out):
    """The state's whole snapshot, for the agreement check (a run writes
    only the members it changed); returns (dir, seconds, peak RSS)."""
    shutil.rmtree(out, ignore_errors=True)
    t, rss, code = run_measured([pitwall, "score", "state", "export", "--state", str(state), "--out", str(out)])
    if code != 0:
        sys.exit(f"pitwall score state export failed with exit code {code}")
    return out, t, rss


def compare(pw, dd):
    import duckdb
    return duckdb.connect().sql(f"""
        SELECT count(*), count(*) FILTER (p.eligible IS DISTINCT FROM d.eligible),
               count(*) FILTER (abs(coalesce(p.score, -1) - coalesce(d.score, -1)) > 0.1 + 1e-9)
        FROM '{pw}/member_scores.parquet' p FULL JOIN '{dd}/member_scores.parquet' d USING (member_id)""").fetchall()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rentals", type=int, default=5_000_000, help="rental results in the 12-month state")
    ap.add_argument("--cars", type=int, default=20_000)
    ap.add_argument("--new", type=int, default=10_000, help="rentals ending in the new hour (900 samples each)")
    ap.add_argument("--work", default="/tmp/pitwall-bench-incremental")
    ap.add_argument("--pitwall", default=None, help="pitwall binary (default: release build in CARGO_TARGET_DIR)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="runs per side; the best is reported")
    a = ap.parse_args()

    target = os.environ.get("CARGO_TARGET_DIR", str(HERE.parent / "target"))
    pitwall = a.pitwall or os.path.join(target, "release", "pitwall")
    work = pathlib.Path(a.work) / f"r{a.rentals}-c{a.cars}-n{a.new}"
    if not (work / "generated.json").exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        print("generating the results and the new hour (once) ...", file=sys.stderr)
        generate(work, a.rentals, a.cars, a.new)
    gen = json.loads((work / "generated.json").read_text())
    CARS[0] = gen["cars"]
    generate_three_years(work, gen["rentals"])
    seeds = {m: seeded(pitwall, work, m) for m in (1, 12, 36)}
    templates = {m: t for m, (t, _) in seeds.items()}
    for f in work.rglob("*.parquet"):
        f.read_bytes()  # the page cache warm for both sides

    best, states = {}, {}
    for rep in range(a.repeat):
        for side, months in (("duckdb", 12), ("pitwall", 12), ("pitwall", 1), ("pitwall", 36)):
            out = work / f"out-{side}-{months}m"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            if side == "duckdb":
                t, rss, code = duckdb_step(work, work / "results_12m.parquet", out, a.threads)
                if code != 0:
                    sys.exit(f"the DuckDB step failed with exit code {code}")
            else:
                t, rss, states[months] = pitwall_step(pitwall, work, templates[months], out, a.threads)
            key = (side, months)
            if key not in best or t < best[key][0]:
                best[key] = (t, rss)

    run = json.loads((work / "out-pitwall-12m" / "run.json").read_text())
    exported, _, _ = export(pitwall, states[12], work / "export-12m")
    members, elig_diff, score_diff = compare(exported, work / "out-duckdb-12m")
    # The 3-year state against DuckDB on its results, once (untimed).
    dd36 = work / "out-duckdb-36m"
    shutil.rmtree(dd36, ignore_errors=True)
    dd36.mkdir()
    if duckdb_step(work, work / "results_36m.parquet", dd36, a.threads)[2] != 0:
        sys.exit("the DuckDB step on the 3-year results failed")
    exported36, ex_t, ex_rss = export(pitwall, states[36], work / "export-36m")
    members36, elig36, score36 = compare(exported36, dd36)
    (pw, pw_rss), (dd, dd_rss), (pw1, _) = best[("pitwall", 12)], best[("duckdb", 12)], best[("pitwall", 1)]
    pw36, pw36_rss = best[("pitwall", 36)]
    ratio, growth, growth36 = pw / dd, pw / pw1, pw36 / pw1
    read = run["inputs"]["telemetry_read"]
    print(f"state: {gen['rentals']:,} rental results; new hour: {gen['samples']:,} samples of {gen['new']:,} rentals")
    print(f"pitwall run --state (12-month state): {pw:6.2f} s   peak RSS {pw_rss / 2**20:7.1f} MiB")
    print(f"pitwall run --state (1-month state) : {pw1:6.2f} s")
    print(f"pitwall run --state (3-year state)  : {pw36:6.2f} s   peak RSS {pw36_rss / 2**20:7.1f} MiB")
    print(f"DuckDB, same step (12-month results): {dd:6.2f} s   peak RSS {dd_rss / 2**20:7.1f} MiB")
    print(f"ratio pitwall/DuckDB: {ratio:.3f} (goal <= 0.25)   12-month/1-month: {growth:.2f} (goal <= 1.3)   "
          f"3-year/1-month: {growth36:.2f} (goal <= 1.5)")
    print(f"pitwall read {read['files_opened']} of {read['files_listed']} files, {read['rows_skipped_by_statistics']:,} rows "
          f"skipped by statistics; evaluated {run['state']['counts']['evaluated']:,}, members {run['state']['counts']['members']:,}")
    io = run["state"]["state_io"]
    print(f"pitwall read of the state: {io['files_read']} files, {io['bytes_read'] / 2**20:.1f} MiB, "
          f"{io['final_rows_read']:,} final rows, {io['snapshot_base_rows_read']:,} + {io['snapshot_delta_rows_read']:,} "
          f"snapshot rows ({io['deltas_merged']} deltas), the rentals of {io['snapshot_rentals_read']:,} members "
          f"({io['snapshot_rental_bytes_read'] / 2**20:.1f} MiB); wrote {io['member_rows_written']:,} member rows"
          f"{' (compacted)' if io['compacted'] else ''}")
    bounded = True
    for months, (_, fig) in sorted(seeds.items()):
        if fig:
            print(f"score state import, {months}-month results: {fig['seconds']:6.1f} s   peak RSS {fig['rss'] / 2**20:7.1f} MiB")
            bounded &= fig["rss"] < GIB
    print(f"score state export, 3-year state: {ex_t:6.1f} s   peak RSS {ex_rss / 2**20:7.1f} MiB (goal < 1 GiB each)")
    bounded &= ex_rss < GIB
    print(f"agreement: {members:,} members, eligible differs {elig_diff}, score differs by > 0.1: {score_diff}; "
          f"3-year: {members36:,} members, {elig36} and {score36}")
    if elig_diff or score_diff or elig36 or score36:
        sys.exit(1)
    if ratio > 0.25 or max(pw_rss, pw36_rss) >= GIB or growth > 1.3 or growth36 > 1.5 or not bounded:
        sys.exit(3)


if __name__ == "__main__":
    main()
