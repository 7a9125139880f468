#!/usr/bin/env python3
"""Benchmark: `pitwall reconcile` against DuckDB doing the same join.

    python3 bench/reconcile_vs_duckdb.py [--events 2000000]

Generates server-log events (the ingest benchmark's generator) into a legacy
Firehose layout (PREFIX/YYYY/MM/DD/HH/*.gz by arrival hour), builds the lake
from it with `pitwall ingest files`, drops 0.1 % of the lake's events, then
times, on 2 threads each:

  pitwall   reconcile: validation + PII transforms of every legacy event,
            match by event_id, per-field comparison, DLQ lookup, report;
  duckdb    read_json(legacy *.gz) FULL OUTER JOIN read_parquet(lake) USING
            (event_id), comparing the fields that need no transform, counts per
            event hour.

Prints events/s for both, the ratio, and the time a day of 30 M events would
take at pitwall's rate. The goal is a day in minutes; DuckDB is the yardstick.
"""
import argparse
import gzip
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ingest_vs_duckdb import generate  # noqa: E402


def legacy_layout(events_dir, legacy):
    """Re-files generated events by arrival hour (event time + 0-10 min)."""
    legacy.mkdir(parents=True)
    out = {}
    n = 0
    for f in sorted(events_dir.glob("*.jsonl")):
        for line in f.open():
            n += 1
            try:
                ts = json.loads(line).get("ts", "")
                t = time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")
                arrival = time.gmtime(time.mktime(t) - time.timezone + (n * 7) % 600)
            except (ValueError, TypeError):
                arrival = time.gmtime(1793491200)
            d = legacy / time.strftime("%Y/%m/%d/%H", arrival)
            if d not in out:
                d.mkdir(parents=True, exist_ok=True)
                out[d] = gzip.open(d / "legacy-1.gz", "wt", compresslevel=1)
            out[d].write(line)
    for g in out.values():
        g.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--pitwall", default=None)
    ap.add_argument("--work", default=None)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", str(HERE.parent / "target"))
    pitwall = a.pitwall or os.path.join(target, "release", "pitwall")
    work = pathlib.Path(a.work or tempfile.mkdtemp(prefix="pitwall-bench-reconcile-"))
    env = dict(os.environ, PITWALL_PII_KEY="bench-key")
    legacy, lake = work / "legacy", work / "lake"
    stamp = work / f".ready-{a.events}"
    if not stamp.exists():
        shutil.rmtree(work / "events", ignore_errors=True)
        shutil.rmtree(legacy, ignore_errors=True)
        shutil.rmtree(lake, ignore_errors=True)
        print(f"generating {a.events:,} events under {work} ...", file=sys.stderr)
        generate(work / "events", a.events, 8)
        legacy_layout(work / "events", legacy)
        subprocess.run([pitwall, "ingest", "files", "--input", str(legacy), "--lake", str(lake), "--threads", "2"],
                       env=env, check=True, capture_output=True)
        # The new path "lost" one event in a thousand: both tools must see it.
        import duckdb
        files = sorted(lake.glob("server_log.api_request/**/*.parquet"))
        for f in files[::2]:
            c = duckdb.connect()
            c.execute(f"COPY (SELECT * FROM read_parquet('{f}') WHERE hash(event_id) % 500 != 0) TO '{f}.tmp' (FORMAT parquet)")
            os.replace(f"{f}.tmp", f)
        stamp.write_text("ok")

    def run_pitwall():
        t = time.perf_counter()
        out = subprocess.run([pitwall, "reconcile", "--legacy", str(legacy), "--lake", str(lake),
                              "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-01T06:00:00Z",
                              "--threads", "2", "--json"], env=env, capture_output=True, text=True)
        took = time.perf_counter() - t
        if out.returncode not in (0, 4):
            sys.exit(f"pitwall reconcile failed:\n{out.stderr}")
        return took, json.loads(out.stdout)["totals"]

    def run_duckdb():
        import duckdb
        c = duckdb.connect()
        c.execute("SET threads = 2")
        t = time.perf_counter()
        row = c.execute(f"""
            WITH l AS (SELECT event_id, service, status, latency_ms, path, CAST(ts AS TIMESTAMPTZ) AS ts
                       FROM read_json('{legacy}/**/*.gz', format = 'newline_delimited', ignore_errors = true,
                                      columns = {{event_id: 'VARCHAR', ts: 'VARCHAR', service: 'VARCHAR',
                                                 status: 'INTEGER', latency_ms: 'DOUBLE', path: 'VARCHAR'}})),
                 k AS (SELECT event_id, service, status, latency_ms, path, ts
                       FROM read_parquet('{lake}/server_log.api_request/**/*.parquet'))
            SELECT count(l.event_id), count(k.event_id),
                   count(*) FILTER (k.event_id IS NULL), count(*) FILTER (l.event_id IS NULL),
                   count(*) FILTER (l.event_id IS NOT NULL AND k.event_id IS NOT NULL AND
                                    (l.service, l.status, l.latency_ms, l.path) IS DISTINCT FROM
                                    (k.service, k.status, k.latency_ms, k.path))
            FROM l FULL OUTER JOIN k USING (event_id)""").fetchone()
        return time.perf_counter() - t, row

    pw, dk = [], []
    for _ in range(a.repeat):
        took, totals = run_pitwall()
        pw.append(took)
        took, row = run_duckdb()
        dk.append(took)
    pw_s, dk_s = min(pw), min(dk)
    n = a.events
    print(f"input               : {n:,} legacy events, {sum(f.stat().st_size for f in legacy.rglob('*.gz')) / 1e6:,.0f} MB gzip")
    print(f"pitwall reconcile   : {pw_s:6.2f} s  {n / pw_s / 1e3:7.0f} k events/s  (missing {totals['missing']:,}, "
          f"differing {totals['differing']:,}, refused {totals['legacy_refused']:,}, of them in the DLQ {totals['refused_in_dlq']:,})")
    print(f"duckdb full join    : {dk_s:6.2f} s  {n / dk_s / 1e3:7.0f} k events/s  (missing {row[2]:,}, differing {row[4]:,}; "
          f"no validation, no PII transforms)")
    print(f"runs                : best of {a.repeat} interleaved (pitwall {', '.join(f'{t:.2f}' for t in pw)} s; "
          f"duckdb {', '.join(f'{t:.2f}' for t in dk)} s)")
    print(f"ratio pitwall/duckdb: {dk_s / pw_s:.2f}")
    print(f"a day of 30 M events: {30e6 / (n / pw_s) / 60:.1f} min at pitwall's rate on this machine")


if __name__ == "__main__":
    main()
