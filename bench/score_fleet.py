"""The fleet of bench/score_soak.py: rentals booked and telemetry landing
in an S3 lake (on moto, written directly: the simulator is not under
test) in real time, with late uploads, resent uploads and, on request,
a telemetry file that is not Parquet and a rentals file cut short.

Cars drive 90 s rentals with 30 s between them, at 1 Hz. Every 5 s the
samples of the 5 s just past land in one file per shard (`dt=/hour=`
folders, as ingestion writes them); a car's share of a slice is sometimes
held back and lands 6-20 s later in a file of its own (a device that
uploads late), and a slice file is sometimes landed again under another
name (a resend: the same samples twice). Rentals are booked every 30 s for
the 30 s ahead, one file per booking, so a rental is listed before it
starts. Every file landed is kept in a local cache under its key, for the
replay of the verdict.
"""
import os
import pathlib
import time

import duckdb

SLICE_MS = 5_000
RENTAL_MS = 90_000
GAP_MS = 30_000
BOOK_MS = 30_000
BACKFILL_MS = 600_000
SHARDS = 4


class Fleet:
    def __init__(self, s3, bucket, prefix, cache, cars, members, t0, end, rnd, late_rate=0.08, resend_rate=0.05):
        self.s3, self.bucket, self.prefix, self.cache = s3, bucket, prefix, pathlib.Path(cache)
        self.t0, self.end, self.rnd = t0, end, rnd
        self.late_rate, self.resend_rate = late_rate, resend_rate
        self.con = duckdb.connect()
        self.con.sql("SET threads = 1")
        rows = []
        for car in range(cars):
            s = t0 - BACKFILL_MS + rnd.randrange(0, RENTAL_MS + GAP_MS, 1000)
            k = 0
            while s + RENTAL_MS <= end:
                rows.append((f"r{car:04d}-{k:04d}", f"m{(car * 7 + k * 13) % members:04d}", f"car-{car:04d}",
                             s, s + RENTAL_MS - 1000))
                s += RENTAL_MS + GAP_MS
                k += 1
        self.con.sql("CREATE TABLE rentals (rental_id VARCHAR, member_id VARCHAR, car_id VARCHAR, s BIGINT, e BIGINT)")
        self.con.executemany("INSERT INTO rentals VALUES (?, ?, ?, ?, ?)", rows)
        self.rentals = len(rows)
        self.last_end = max(r[4] for r in rows)
        self.next_slice = t0 + SLICE_MS  # the end of the next slice to land
        self.next_booking = t0 + BOOK_MS
        self.pending = []  # (due ms, key, local path): late and resent uploads
        self.counts = {"telemetry_files": 0, "late_uploads": 0, "resent_uploads": 0, "samples": 0,
                       "rentals_files": 0}
        self.last_landed_ms = 0

    # -- keys and landing --------------------------------------------------

    def telemetry_key(self, lo, name):
        t = time.gmtime(lo / 1000)
        return (f"{self.prefix}/lake/telemetry.kinematics/dt={time.strftime('%Y-%m-%d', t)}/"
                f"hour={time.strftime('%H', t)}/{name}")

    def rentals_key(self, n):
        return f"{self.prefix}/rentals/booked-{n:04d}.parquet"

    def local(self, key):
        p = self.cache / key
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def put(self, key, path):
        """One S3 PUT: a reader sees the whole file or none of it."""
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=pathlib.Path(path).read_bytes())
        self.last_landed_ms = time.time() * 1000

    # -- rentals -----------------------------------------------------------

    def book(self, n, lo, hi):
        key = self.rentals_key(n)
        path = self.local(key)
        self.con.sql(f"""COPY (SELECT rental_id, member_id, car_id, make_timestamptz(s * 1000) AS start_at,
                                      make_timestamptz(e * 1000) AS end_at
                               FROM rentals WHERE s >= {lo} AND s < {hi} ORDER BY rental_id)
                         TO '{path}' (FORMAT parquet)""")
        self.put(key, path)
        self.counts["rentals_files"] += 1

    def truncate_rentals(self):
        """Replaces the first booking (it lists the most rentals) by its
        first half; returns the key, for `restore_rentals`."""
        key = self.rentals_key(0)
        body = self.local(key).read_bytes()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body[: len(body) // 2])
        return key

    def restore_rentals(self, key):
        self.put(key, self.local(key))

    # -- telemetry ---------------------------------------------------------

    def samples(self, lo, hi):
        """Samples in [lo, hi) of every rental on the road: a speed wave, a
        little noise, and now and then a hard stop."""
        self.con.sql(f"""
          CREATE OR REPLACE TEMP TABLE slice AS
          SELECT car_id, make_timestamptz(ts * 1000) AS ts,
                 greatest(0, 45 + 35 * sin((ts - s) / 15000.0 + hash(rental_id) % 7)
                             + (hash(rental_id, ts) % 9) - 4
                             - CASE WHEN hash(rental_id, ts) % 41 = 0 THEN 30 ELSE 0 END)::DOUBLE AS speed_kmh,
                 CASE WHEN hash(rental_id) % 3 = 0 THEN NULL ELSE 50.0 END::DOUBLE AS speed_limit_kmh,
                 hash(car_id) % {SHARDS} AS shard
          FROM rentals, range({lo}, {hi}, 1000) r(ts)
          WHERE ts >= s AND ts <= e""")
        return self.con.sql("SELECT count(*) FROM slice").fetchall()[0][0]

    def write(self, key, where):
        path = self.local(key)
        self.con.sql(f"""COPY (SELECT car_id, ts, speed_kmh, speed_limit_kmh FROM slice WHERE {where}
                               ORDER BY car_id, ts) TO '{path}' (FORMAT parquet)""")
        return path

    def land_slice(self, lo, hi, tag, now_ms, faults=True):
        n = self.samples(lo, hi)
        self.counts["samples"] += n
        if n == 0:
            return
        cars = [r[0] for r in self.con.sql("SELECT DISTINCT car_id FROM slice ORDER BY car_id").fetchall()]
        held = [c for c in cars if faults and self.rnd.random() < self.late_rate]
        # Not `NOT IN (NULL)`, which keeps nothing.
        keep = f"car_id NOT IN ({', '.join(repr(c) for c in held)})" if held else "TRUE"
        for c in held:
            key = self.telemetry_key(lo, f"late-{tag}-{c}.parquet")
            self.pending.append((now_ms + self.rnd.uniform(6_000, 20_000), key, self.write(key, f"car_id = '{c}'")))
            self.counts["late_uploads"] += 1
        for shard in range(SHARDS):
            key = self.telemetry_key(lo, f"slice-{tag}-{shard}.parquet")
            path = self.write(key, f"shard = {shard} AND {keep}")
            self.put(key, path)
            self.counts["telemetry_files"] += 1
            if faults and self.rnd.random() < self.resend_rate:
                again = self.telemetry_key(lo, f"resent-{tag}-{shard}.parquet")
                self.local(again).write_bytes(path.read_bytes())
                self.pending.append((now_ms + self.rnd.uniform(3_000, 15_000), again, self.local(again)))
                self.counts["resent_uploads"] += 1

    def backfill(self):
        """What the lake holds before the soak starts: the ten minutes
        before it, a file per minute and shard, and the bookings so far."""
        for lo in range(self.t0 - BACKFILL_MS, self.t0, 60_000):
            self.land_slice(lo, lo + 60_000, f"b{lo // 1000}", lo, faults=False)
        self.book(0, self.t0 - 2 * BACKFILL_MS, self.t0 + BOOK_MS)

    def tick(self, now_ms):
        """Lands whatever is due by `now_ms`."""
        while self.next_booking <= now_ms:
            n = (self.next_booking - self.t0) // BOOK_MS
            self.book(n, self.next_booking, self.next_booking + BOOK_MS)
            self.next_booking += BOOK_MS
        while self.next_slice <= now_ms and self.next_slice - SLICE_MS <= self.last_end:
            lo = self.next_slice - SLICE_MS
            self.land_slice(lo, self.next_slice, f"{lo // 1000}", now_ms)
            self.next_slice += SLICE_MS
        due = [p for p in self.pending if p[0] <= now_ms]
        self.pending = [p for p in self.pending if p[0] > now_ms]
        for _, key, path in due:
            self.put(key, path)
            self.counts["telemetry_files"] += 1

    def done(self):
        """Every sample landed: the last rental is over and nothing waits."""
        return self.next_slice - SLICE_MS > self.last_end and not self.pending

    def not_parquet(self, now_ms):
        """Lands a telemetry file that is not Parquet; returns its key."""
        key = self.telemetry_key(now_ms - SLICE_MS, f"broken-{now_ms // 1000}.parquet")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"PAR1 this is not a Parquet file\n" + os.urandom(64))
        return key

    def remove(self, key):
        self.s3.delete_object(Bucket=self.bucket, Key=key)
