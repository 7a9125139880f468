#!/usr/bin/env python3
"""Benchmark and cross-check: `pitwall score run` against the same spec in
DuckDB SQL (bench/score_duckdb.sql), on the same generated fleet, in the same
run, both with 2 threads.

Prints both wall times, the ratio, pitwall's peak RSS, and how many rentals
and members the two implementations disagree on. Exit status: 1 when they
disagree, 3 when a performance goal is missed (pitwall <= 1/4 of DuckDB's
time, peak RSS < 1 GiB), 0 otherwise.

    python3 bench/score_vs_duckdb.py                 # ~20 M samples
    python3 bench/score_vs_duckdb.py --rentals 300 --check-only   # correctness only (CI)
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
AS_OF = "2026-11-01T00:00:00Z"
AS_OF_MS = 1793491200000
GRACE_MS = 4 * 3600 * 1000
GIB = 1 << 30


def run_measured(cmd, env=None):
    """Runs cmd; returns (seconds, peak RSS bytes, exit code) of that child alone."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    return time.perf_counter() - t, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status)


def duckdb_script(fleet, out):
    sql = (HERE / "score_duckdb.sql").read_text()
    return (sql.replace("{rentals}", str(fleet / "rentals.parquet"))
               .replace("{telemetry}", str(fleet / "telemetry"))
               .replace("{as_of_ms}", str(AS_OF_MS))
               .replace("{grace_ms}", str(GRACE_MS))
               .replace("{out}", str(out)))


def compare(pw, dd):
    import duckdb
    c = duckdb.connect()
    r = c.sql(f"""
        SELECT count(*) AS rentals,
               count(*) FILTER (p.status IS DISTINCT FROM d.status) AS status_diff,
               count(*) FILTER (abs(p.score - d.score) > 1e-9) AS score_diff,
               count(*) FILTER (abs(p.score - d.score) > 0.1 + 1e-9) AS score_diff_big,
               count(*) FILTER (p.samples <> d.samples OR p.harsh_brake_n <> d.harsh_brake_n
                                OR p.harsh_accel_n <> d.harsh_accel_n OR p.unstable_stop_n <> d.unstable_stop_n
                                OR p.speeding_s <> d.speeding_s OR p.excess_speeding_s <> d.excess_speeding_s
                                OR p.moving_s <> d.moving_s OR abs(p.distance_km - d.distance_km) > 1e-6) AS feature_diff
        FROM '{pw}/rental_scores.parquet' p FULL JOIN '{dd}/rental_scores.parquet' d USING (rental_id)""").fetchall()[0]
    m = c.sql(f"""
        SELECT count(*), count(*) FILTER (p.eligible IS DISTINCT FROM d.eligible),
               count(*) FILTER (abs(coalesce(p.score, -1) - coalesce(d.score, -1)) > 0.1 + 1e-9)
        FROM '{pw}/member_scores.parquet' p FULL JOIN '{dd}/member_scores.parquet' d USING (member_id)""").fetchall()[0]
    return {"rentals": r[0], "status_diff": r[1], "score_diff": r[2], "score_diff_over_0.1": r[3],
            "feature_diff": r[4], "members": m[0], "eligible_diff": m[1], "member_score_diff_over_0.1": m[2]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rentals", type=int, default=2800, help="fleet size; 2800 gives ~20 M samples")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", default="/tmp/pitwall-bench-score")
    ap.add_argument("--pitwall", default=None, help="pitwall binary (default: release build in CARGO_TARGET_DIR)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check-only", action="store_true", help="only check that both agree; no timing verdict")
    a = ap.parse_args()

    target = os.environ.get("CARGO_TARGET_DIR", str(HERE.parent / "target"))
    pitwall = a.pitwall or os.path.join(target, "release", "pitwall")
    work = pathlib.Path(a.work)
    fleet = work / f"fleet-{a.rentals}-{a.seed}"
    if not (fleet / "rentals.parquet").exists():
        subprocess.run([pitwall, "gen", "fleet", "--out", str(fleet), "--rentals", str(a.rentals),
                        "--seed", str(a.seed)], check=True)
    pw_out, dd_out = work / "pitwall-out", work / "duckdb-out"
    for d in (pw_out, dd_out):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)

    # Warm the page cache equally for both: read every file once.
    for f in fleet.rglob("*.parquet"):
        f.read_bytes()

    pw_s, pw_rss, code = run_measured([pitwall, "score", "run", "--rentals", str(fleet / "rentals.parquet"),
                                       "--telemetry", str(fleet / "telemetry"), "--as-of", AS_OF,
                                       "--out", str(pw_out), "--threads", str(a.threads)],
                                      env={**os.environ, "PITWALL_LOG": "warn"})
    if code not in (0, 3):
        sys.exit(f"pitwall score run failed with exit code {code}")
    rows = json.loads((pw_out / "run.json").read_text())["inputs"]["telemetry"]["rows"]

    script = duckdb_script(fleet, dd_out)
    dd_s, dd_rss, code = run_measured([sys.executable, "-c",
        "import duckdb,sys; c=duckdb.connect(); c.execute('SET threads=' + sys.argv[2]); "
        "c.execute(open(sys.argv[1]).read())", write_tmp(work, script), str(a.threads)])
    if code != 0:
        sys.exit(f"the DuckDB peer failed with exit code {code}")

    diff = compare(pw_out, dd_out)
    ratio = pw_s / dd_s
    print(f"telemetry rows     : {rows:,}")
    print(f"pitwall score run  : {pw_s:7.2f} s   peak RSS {pw_rss / 2**20:7.1f} MiB")
    print(f"DuckDB (same spec) : {dd_s:7.2f} s   peak RSS {dd_rss / 2**20:7.1f} MiB")
    print(f"ratio pitwall/DuckDB: {ratio:.3f}  (DuckDB/pitwall = {dd_s / pw_s:.1f}x)")
    print("agreement          : " + json.dumps(diff))
    disagree = diff["status_diff"] or diff["feature_diff"] or diff["score_diff_over_0.1"] \
        or diff["eligible_diff"] or diff["member_score_diff_over_0.1"]
    if disagree:
        print("FAIL: pitwall and the DuckDB peer disagree")
        sys.exit(1)
    if a.check_only:
        print("OK: both implementations agree")
        return
    goals_met = ratio <= 0.25 and pw_rss < GIB
    print(f"goals (ratio <= 0.25, RSS < 1 GiB): {'met' if goals_met else 'MISSED'}")
    sys.exit(0 if goals_met else 3)


def write_tmp(work, text):
    p = work / "duckdb_script.sql"
    p.write_text(text)
    return str(p)


if __name__ == "__main__":
    main()
