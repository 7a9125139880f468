#!/usr/bin/env python3
"""Benchmark: `pitwall score watch --every 15s` on a 12-month state while a
20,000-car fleet's telemetry lands in the lake, publishing to a real broker.

The state: rental results of a year before the bench starts (default 5 M
rentals of 500 k members, as bench/score_incremental.py makes them),
seeded with `pitwall score state import`. Then, for --minutes in real time,
a writer lands each minute's samples of every car on a rental (1 Hz, one
file per minute and shard in `dt=/hour=` folders, as ingestion writes
them) right after the minute ends; cars drive 15-minute rentals with 5
minutes between them, so about a thousand rentals end every minute. The
rentals input lists them all (and the last week's) from the start: the
watcher considers each once it has ended. One watcher publishes to a topic
on the local broker (tansu, started by scripts/services.sh); a consumer
that is not pitwall's (confluent-kafka, read_committed, fastavro) reads
it.

Printed, as figures and as JSON:
  - cycle duration p50 / p95 / max (from the watcher's /metrics);
  - the watcher's RSS over time (sampled every 5 s): first, last, max,
    and the growth from the first quarter to the last;
  - freshness: from the lake file holding a rental's last sample being
    written to the first record of its member that lists the rental being
    readable on the topic after it, p50 / p95 / max (0 for a rental whose
    record was on the topic before, scored open on 95 % of its samples, and
    did not change when the rest landed: it was already right).
Goals: cycle p95 <= 5 s, RSS < 1 GiB and not growing, freshness p95 <= 60 s.
Exit status 3 when a goal is missed, 2 when the watcher died or published
nothing (an environment failure is never a pass), 0 otherwise.

    python3 bench/watch_at_scale.py                              # 20 minutes, 20,000 cars, 5 M results
    python3 bench/watch_at_scale.py --minutes 3 --rentals 500000 --cars 2000   # a quick look
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import score_incremental as si  # noqa: E402  (the results generator, shared)
from freshness import Topic, services  # noqa: E402  (the topic reader and the services, shared)

MINUTE_MS = 60_000
RENTAL_MS = 15 * MINUTE_MS
CYCLE_MS = 20 * MINUTE_MS  # a rental, then 5 idle minutes
SHARDS = 4
GIB = 1 << 30


def pct(xs, q):
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, int(round(q * len(xs))) - 1))] if xs else None


def seed_state(pitwall, work, rentals, cars, t0):
    """A year of results ending at t0, imported; the last week's rentals."""
    import duckdb
    si.CARS[0] = cars
    si.NEW_HOUR_MS = t0  # results_sql ends the year just before it
    c = duckdb.connect()
    c.sql("SET threads = 2")
    results = work / "results.parquet"
    c.sql(f"COPY ({si.results_sql(0, rentals, rentals, 0)}) TO '{results}' (FORMAT parquet)")
    c.sql(f"""COPY (SELECT rental_id, member_id, car_id, start_at, end_at FROM read_parquet('{results}')
              WHERE epoch_ms(end_at) >= {t0 - 7 * 86_400_000}) TO '{work / "recent.parquet"}' (FORMAT parquet)""")
    t, rss, code = si.run_measured([pitwall, "score", "state", "import", "--state", str(work / "state"),
                                    "--rental-results", str(results)])
    if code != 0:
        sys.exit(f"pitwall score state import failed with exit code {code}")
    return t, rss


def fleet_rentals(work, cars, members, t0, minutes):
    """Every car's rentals over the bench (15 minutes each, 5 between,
    staggered by car), with the last week's, as the watcher's rentals input."""
    import duckdb
    c = duckdb.connect()
    end = t0 + (minutes + 1) * MINUTE_MS
    c.sql(f"""
      CREATE TABLE live AS
      SELECT printf('w%05d-%04d', car, k) AS rental_id,
             printf('m%07d', hash(car, k, 'wm') % {members}) AS member_id,
             printf('car-%05d', car) AS car_id,
             {t0} - (hash(car, 'off') % {CYCLE_MS})::BIGINT + k * {CYCLE_MS} AS s
      FROM range({cars}) a(car), range(0, {minutes // 20 + 2}) b(k)""")
    c.sql(f"DELETE FROM live WHERE s + {RENTAL_MS} <= {t0} OR s >= {end}")
    c.sql(f"""COPY (SELECT rental_id, member_id, car_id, start_at, end_at FROM read_parquet('{work / "recent.parquet"}')
              UNION ALL SELECT rental_id, member_id, car_id, make_timestamptz(s * 1000),
                               make_timestamptz((s + {RENTAL_MS} - 1000) * 1000) FROM live)
              TO '{work / "rentals.parquet"}' (FORMAT parquet)""")
    return c


class Lake(threading.Thread):
    """Lands each minute's samples right after the minute ends."""

    def __init__(self, con, lake, t0, minutes):
        super().__init__(daemon=True)
        self.con, self.lake, self.t0, self.minutes = con, lake, t0, minutes
        self.written = {}  # minute start ms -> wall ms its files were all written
        self.samples = 0
        self.behind_ms = []

    def run(self):
        for m in range(self.minutes):
            hi = self.t0 + (m + 1) * MINUTE_MS
            wait = hi / 1000 - time.time()
            if wait > 0:
                time.sleep(wait)
            self.land(m)

    def backfill(self):
        """The quarter hour before the start, as the lake already holds it."""
        for m in range(-RENTAL_MS // MINUTE_MS, 0):
            self.land(m)

    def land(self, m):
        lo = self.t0 + m * MINUTE_MS
        hi = lo + MINUTE_MS
        dt = time.strftime("%Y-%m-%d", time.gmtime(lo / 1000))
        hour = time.strftime("%H", time.gmtime(lo / 1000))
        folder = self.lake / f"dt={dt}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        # Samples of this minute of every rental on the road, 1 Hz.
        self.con.sql(f"""
          CREATE OR REPLACE TEMP TABLE minute AS
          SELECT car_id, make_timestamptz(ts * 1000) AS ts,
                 greatest(0, 50 + 35 * sin((ts - s) / 40000.0 + hash(rental_id) % 7)
                             + (hash(rental_id, ts) % 9) - 4)::DOUBLE AS speed_kmh,
                 CASE WHEN hash(rental_id) % 3 = 0 THEN NULL ELSE 50.0 END::DOUBLE AS speed_limit_kmh,
                 hash(car_id) % {SHARDS} AS shard
          FROM live, range({lo}, {hi}, 1000) r(ts)
          WHERE ts >= s AND ts < s + {RENTAL_MS}""")
        for shard in range(SHARDS):
            # Renamed whole into place: a reader never sees a part of it.
            tmp = folder / f"min-{m:04d}-{shard}.parquet.tmp"
            self.con.sql(f"""COPY (SELECT car_id, ts, speed_kmh, speed_limit_kmh FROM minute
                              WHERE shard = {shard} ORDER BY ts) TO '{tmp}' (FORMAT parquet)""")
            tmp.rename(folder / f"min-{m:04d}-{shard}.parquet")
        self.samples += self.con.sql("SELECT count(*) FROM minute").fetchall()[0][0]
        now = time.time() * 1000
        self.written[lo] = now
        if m >= 0:
            self.behind_ms.append(now - hi)


class Watcher(threading.Thread):
    """Samples the watcher's RSS and each cycle's duration from /metrics."""

    def __init__(self, proc, metrics_url):
        super().__init__(daemon=True)
        self.proc, self.url = proc, metrics_url
        self.rss, self.cycles = [], []
        self.first_cycle_at = float("inf")
        self.stop = threading.Event()

    def metric(self, text, name):
        m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
        return float(m.group(1)) if m else None

    def run(self):
        done, last_rss = 0.0, 0.0
        while not self.stop.is_set() and self.proc.poll() is None:
            try:
                text = urllib.request.urlopen(self.url, timeout=5).read().decode()
                count = self.metric(text, "pitwall_watch_cycle_duration_seconds_count") or 0
                if count > done:
                    self.cycles.append(self.metric(text, "pitwall_watch_last_cycle_duration_seconds"))
                    self.first_cycle_at = min(self.first_cycle_at, time.time())
                    done = count
            except OSError:
                pass
            if time.time() - last_rss >= 5:
                try:
                    kib = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{self.proc.pid}/status").read()).group(1))
                    self.rss.append((time.time(), kib * 1024))
                except (OSError, AttributeError):
                    pass
                last_rss = time.time()
            time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--cars", type=int, default=20_000)
    ap.add_argument("--rentals", type=int, default=5_000_000, help="rental results of the year before")
    ap.add_argument("--every", default="15s")
    ap.add_argument("--pitwall", default=None, help="pitwall binary (default: release build in CARGO_TARGET_DIR)")
    a = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    pitwall = a.pitwall or os.path.join(target, "release", "pitwall")
    env = services()
    work = pathlib.Path(tempfile.mkdtemp(prefix="pitwall-watch-scale-"))
    try:
        result = bench(a, pitwall, env, work)
    finally:
        subprocess.run([str(ROOT / "scripts/services.sh"), "stop"], stdout=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    report(result)


def bench(a, pitwall, env, work):
    print(f"seeding a 12-month state of {a.rentals:,} results ...", file=sys.stderr)
    import_s, import_rss = seed_state(pitwall, work, a.rentals, a.cars, int(time.time() * 1000))
    # The fleet starts on the next whole minute after its rentals and the
    # lake's last quarter hour are written (well under two minutes).
    t0 = (int(time.time() * 1000) // MINUTE_MS + 2) * MINUTE_MS
    con = fleet_rentals(work, a.cars, max(a.rentals // 10, 1), t0, a.minutes)
    brokers = env["PITWALL_TEST_KAFKA"]
    topic = f"scale-{os.getpid()}"
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": brokers})
    for fut in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        fut.result(30)
    lake = work / "lake"
    lake.mkdir()
    writer, reader = Lake(con, lake, t0, a.minutes), Topic(brokers, topic)
    writer.backfill()
    port = 19000 + os.getpid() % 1000
    log = open(work / "watch.log", "w")
    if time.time() * 1000 > t0:
        sys.exit("the setup took past the fleet's start; raise the lead in bench()")
    time.sleep(max(0, t0 / 1000 - time.time()))
    watch = subprocess.Popen([pitwall, "score", "watch", "--state", str(work / "state"), "--rentals",
                              str(work / "rentals.parquet"), "--telemetry", str(lake), "--every", a.every,
                              "--leases", f"sqlite:{work / 'watch.db'}", "--out", str(work / "cycles"),
                              "--listen", f"127.0.0.1:{port}", "--brokers", brokers, "--topic", topic,
                              "--registry", f"file:{work / 'registry'}", "--transactional=false"],
                             env={**env, "PITWALL_LOG": "warn"}, stdout=subprocess.DEVNULL, stderr=log)
    sampler = Watcher(watch, f"http://127.0.0.1:{port}/metrics")
    for t in (writer, reader, sampler):
        t.start()
    print(f"{a.cars:,} cars for {a.minutes} min in real time, watch every {a.every} ...", file=sys.stderr)
    writer.join()
    time.sleep(60)  # the last minute's rentals travel the whole chain
    alive = watch.poll() is None
    watch.send_signal(signal.SIGTERM)
    try:
        watch.wait(120)
    except subprocess.TimeoutExpired:
        watch.kill()
    sampler.stop.set()
    reader.stop.set()
    reader.join(10)
    ended = con.sql(f"""SELECT rental_id, s + {RENTAL_MS} - 1000 AS e FROM live
                        WHERE s + {RENTAL_MS} - 1000 BETWEEN {t0} AND {t0 + a.minutes * MINUTE_MS - 1}""").fetchall()
    # Why a rental never reached the topic: only eligible members are
    # published, so split the missing ones by their member's eligibility in
    # the state at the end.
    export = work / "export"
    subprocess.run([pitwall, "score", "state", "export", "--state", str(work / "state"), "--out", str(export)],
                   check=True, stdout=subprocess.DEVNULL)
    con.sql(f"CREATE TEMP TABLE members AS SELECT member_id, eligible FROM read_parquet('{export / 'member_scores.parquet'}')")
    unseen = [r for r, _ in ended if r not in reader.seen]
    con.sql("CREATE TEMP TABLE unseen (rental_id VARCHAR)")
    con.executemany("INSERT INTO unseen VALUES (?)", [(r,) for r in unseen])
    missing_by_eligibility = dict(con.sql("""
        SELECT coalesce(m.eligible::VARCHAR, 'no record'), count(*) FROM unseen u JOIN live l USING (rental_id)
        LEFT JOIN members m USING (member_id) GROUP BY 1""").fetchall())
    fresh = []
    for rental_id, e in ended:
        landed = writer.written.get(e // MINUTE_MS * MINUTE_MS)
        if rental_id not in reader.seen or landed is None:
            continue
        # The first record listing it once its last sample landed; a record
        # that listed it before (scored on 95 % of its samples, open) and did
        # not change when the rest landed was already right: 0.
        after = [t for t in reader.seen[rental_id] if t >= landed]
        fresh.append((after[0] - landed) / 1000 if after else 0.0)
    # From the end of the first cycle: the process's start is not its size.
    rss = [r for t, r in sampler.rss if t >= sampler.first_cycle_at]
    q = max(1, len(rss) // 4)
    return {
        "minutes": a.minutes, "cars": a.cars, "every": a.every, "results": a.rentals,
        "import_s": import_s, "import_rss": import_rss, "samples": writer.samples,
        "lake_behind_p95_s": pct(writer.behind_ms, 0.95) / 1000 if writer.behind_ms else None,
        "watcher_alive_at_end": alive, "cycles": len(sampler.cycles),
        "cycle_p50_s": pct(sampler.cycles, 0.5), "cycle_p95_s": pct(sampler.cycles, 0.95),
        "cycle_max_s": max(sampler.cycles) if sampler.cycles else None,
        "rss_first": rss[0] if rss else None, "rss_last": rss[-1] if rss else None,
        "rss_max": max(rss) if rss else None,
        "rss_growth": (statistics.mean(rss[-q:]) / statistics.mean(rss[:q])) if rss else None,
        "rentals_ended": len(ended), "rentals_on_topic": len(fresh), "records_read": reader.records,
        "missing_by_member_eligible": missing_by_eligibility,
        "fresh_over_60_s": sum(1 for x in fresh if x > 60),
        "fresh_p50_s": pct(fresh, 0.5), "fresh_p95_s": pct(fresh, 0.95), "fresh_max_s": max(fresh) if fresh else None,
    }


def report(r):
    f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    mib = lambda v: "-" if v is None else f"{v / 2**20:.0f} MiB"
    print(f"state: {r['results']:,} results imported in {f(r['import_s'])} s (peak {mib(r['import_rss'])}); "
          f"{r['cars']:,} cars for {r['minutes']} min: {r['samples']:,} samples landed "
          f"(each minute p95 {f(r['lake_behind_p95_s'])} s after its end)")
    print(f"cycles: {r['cycles']}, duration p50 {f(r['cycle_p50_s'], 2)} s  p95 {f(r['cycle_p95_s'], 2)} s  "
          f"max {f(r['cycle_max_s'], 2)} s (goal p95 <= 5 s)")
    print(f"watcher RSS: first {mib(r['rss_first'])}, last {mib(r['rss_last'])}, max {mib(r['rss_max'])}, "
          f"last quarter / first quarter {f(r['rss_growth'], 2)} (goal < 1 GiB, not growing)")
    print(f"freshness (lake file written -> record on the topic): p50 {f(r['fresh_p50_s'])} s  "
          f"p95 {f(r['fresh_p95_s'])} s  max {f(r['fresh_max_s'])} s; {r['rentals_on_topic']:,} of "
          f"{r['rentals_ended']:,} ended rentals seen (goal p95 <= 60 s); {r['fresh_over_60_s']} over 60 s")
    print(f"rentals never on the topic, by their member's eligibility at the end: {r['missing_by_member_eligible']}")
    print(json.dumps(r))
    if not r["watcher_alive_at_end"] or not r["cycles"] or not r["rentals_on_topic"]:
        print("the watcher died or published nothing: see its log", file=sys.stderr)
        sys.exit(2)
    if (r["cycle_p95_s"] > 5 or r["rss_max"] >= GIB or r["rss_growth"] > 1.2
            or r["fresh_p95_s"] is None or r["fresh_p95_s"] > 60):
        sys.exit(3)


if __name__ == "__main__":
    main()
