#!/usr/bin/env python3
"""Fault soak of `pitwall ingest run`: three workers with DynamoDB leases and
an S3 lake, both on moto behind crates/pitwall/tests/fault_proxy.py, while
records keep arriving on a kinesalite stream, workers are killed (-9) or
stopped (TERM) and restarted at random, and the stream is split and merged.

    python3 bench/ingest_soak.py [--duration 600] [--workers 3] [--shards 4]
        [--seed 1] [--pitwall BIN] [--json]

S3 PUTs and GETs meet 500, 503, SlowDown, connections reset mid-body, slow
answers (1.5 s), PUTs stalled in the network and answers held past the
clients' timeouts; DynamoDB meets throttling, slow and held answers. When
the time is up the producer stops, every killed worker is restarted, and the
soak waits until the lease table has checkpointed every record put (closed
shards at SHARD_END), faults still on; then it stops the workers and reads
the lake and its DLQ back from moto directly, with DuckDB.

Prints events in, faults by kind, retries (requests that repeat a faulted
one, as the proxy saw them), lease moves (takes beyond each shard's first),
kills, restarts, splits, merges, duplicates and missing (both must be 0),
DLQ entries against the bad records put, and credential leaks: the workers
run with a secret key and a PII key made up for the run, and every log line
they wrote is searched for either (must be 0). --json prints the same as one JSON
object on stdout. Exit 0: every valid event exactly once and every bad one
in the DLQ; 1: not so; 2: ENVIRONMENT FAILURE (moto or kinesalite stopped
answering: the run says nothing about pitwall).

Uses the services of scripts/services.sh (started if the environment does
not name them, and stopped again then).
"""
import argparse
import base64
import collections
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import duckdb

from soak_common import (TERM_GRACE, EnvironmentFailure, check_environment, client, default_pitwall,
                         fault_figures, leaks, log, run, start_proxy)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
DATASET = "server_log.api_request"
# Made up per run, so finding one in a log can only be a leak. The access key
# id stays (moto picks the account by it); the secret is never checked.
SECRET_KEY = "soakSecret" + os.urandom(12).hex()
PII_KEY = "soakPii" + os.urandom(12).hex()


def event(n):
    return json.dumps({
        "event_id": "00000000-0000-4000-8000-%012d" % n,
        "ts": "2026-11-01T%02d:%02d:%02d.%03dZ" % (8 + n % 3, n % 60, (n * 7) % 60, n % 1000),
        "service": "rentals", "env": "prod", "level": "INFO", "method": "GET",
        "path": "/v1/cars/%d" % n, "status": 999 if n % 11 == 0 else 200,
        "latency_ms": n % 500 / 10, "client_ip": "198.51.100.%d" % (n % 256),
        "phone": "+4915100%05d" % n,
    })


class Producer(threading.Thread):
    """Puts records of one to three events each (every 11th event breaks the
    contract; every 40th record is not JSON at all) until stopped, and keeps
    what was put: the valid ids, the refused ids, the garbage records, and
    the last sequence number put to each shard."""

    def __init__(self, stream, rate, rnd):
        super().__init__(daemon=True)
        self.k = client("kinesis")
        self.stream, self.rate, self.rnd = stream, rate, rnd
        self.good, self.refused, self.garbage = [], set(), 0
        self.last_seq = {}
        self.placed = {}  # event id -> (shard, sequence number): where a missing one was put
        self.next_id, self.records = 1, 0
        self.stop = threading.Event()
        self.error = None

    def batch(self):
        out = []
        for _ in range(max(1, self.rate // 4)):
            self.records += 1
            if self.records % 40 == 0:
                out.append((b"{not json %d" % self.records, None))
                continue
            ids = list(range(self.next_id, self.next_id + self.rnd.randint(1, 3)))
            self.next_id += len(ids)
            out.append(("\n".join(event(n) for n in ids).encode(), ids))
        return out

    def put(self, batch):
        pending = batch
        for attempt in range(20):
            res = self.k.put_records(StreamName=self.stream, Records=[
                {"Data": d, "PartitionKey": "pk-%d" % self.rnd.getrandbits(32)} for d, _ in pending])
            failed = []
            for (data, ids), r in zip(pending, res["Records"]):
                if "ErrorCode" in r:
                    failed.append((data, ids))
                    continue
                seq = int(r["SequenceNumber"])
                self.last_seq[r["ShardId"]] = max(seq, self.last_seq.get(r["ShardId"], 0))
                if ids is None:
                    self.garbage += 1
                for n in ids or []:
                    (self.refused.add(n) if n % 11 == 0 else self.good.append(n))
                    self.placed[n] = (r["ShardId"], r["SequenceNumber"])
            if not failed:
                return
            pending = failed
            time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"{len(pending)} records could not be put")

    def run(self):
        try:
            while not self.stop.is_set():
                self.put(self.batch())
                self.stop.wait(0.25)
        except Exception as e:  # noqa: BLE001 — reported by the soak
            self.error = e


class Workers:
    """The pitwall workers: started, killed, restarted; their logs kept."""

    def __init__(self, pitwall, stream, lake, table, via, logs, rnd):
        self.pitwall, self.stream, self.lake, self.table, self.via = pitwall, stream, lake, table, via
        self.logs, self.rnd = logs, rnd
        self.procs = {}  # slot -> (worker id, Popen)
        self.incarnation = 0
        self.kills = self.terms = self.restarts = 0
        self.stopping = []  # (slot, worker id, Popen, how, when signalled)
        self.pending = []  # (restart at, slot, worker id or None for a new one)
        self.problems, self.term_exit_seconds = [], []

    def start(self, slot, worker_id=None):
        self.incarnation += 1
        worker_id = worker_id or f"w{slot}-{self.incarnation}"
        env = dict(os.environ, AWS_ENDPOINT_URL_S3=self.via, AWS_ENDPOINT_URL_DYNAMODB=self.via,
                   PITWALL_PII_KEY=PII_KEY, PITWALL_LOG="info")
        err = open(self.logs / f"{worker_id}.{self.incarnation}.log", "w")
        p = subprocess.Popen([
            self.pitwall, "ingest", "run", "--stream", self.stream, "--lake", self.lake,
            "--leases", f"dynamodb:{self.table}", "--worker-id", worker_id,
            "--listen", "127.0.0.1:0", "--failover", "10s", "--idle-poll", "200ms",
            "--discover-every", "2s", "--roll-age", "2s", "--roll-bytes", "64KiB",
        ], env=env, stdout=subprocess.DEVNULL, stderr=err)
        self.procs[slot] = (worker_id, p)

    def disrupt(self):
        """Kills or stops one running worker at random. It does not wait for
        the exit: `tend` reaps it and restarts it later, half the time under
        its old id (a StatefulSet pod), else under a new one, so a slow TERM
        drain does not hold back the rest of the schedule."""
        if not self.procs:
            return
        slot = self.rnd.choice(sorted(self.procs))
        worker_id, p = self.procs.pop(slot)
        if self.rnd.random() < 0.6:
            p.kill()
            self.kills += 1
            how = "killed (-9)"
        else:
            p.send_signal(signal.SIGTERM)
            self.terms += 1
            how = "stopped (TERM)"
        self.stopping.append((slot, worker_id, p, how, time.time()))

    def tend(self):
        """Reaps the workers that have exited since they were signalled and
        restarts those whose delay has passed. A TERM that takes longer
        than TERM_GRACE is a problem: Kubernetes would have killed the pod."""
        now = time.time()
        still = []
        for slot, worker_id, p, how, t in self.stopping:
            if p.poll() is None and now - t < TERM_GRACE:
                still.append((slot, worker_id, p, how, t))
                continue
            if p.poll() is None:
                p.kill()
                p.wait()
                self.problems.append(f"{worker_id} did not stop within {TERM_GRACE} s of TERM")
            took = round(time.time() - t, 1)
            if how.startswith("stopped"):
                self.term_exit_seconds.append(took)
            log(f"worker {worker_id} {how}, exit {p.returncode} after {took} s")
            keep = self.rnd.random() < 0.5
            self.pending.append((now + self.rnd.uniform(0.5, 4), slot, worker_id if keep else None))
        self.stopping = still
        due = [x for x in self.pending if x[0] <= now]
        self.pending = [x for x in self.pending if x[0] > now]
        for _, slot, worker_id in due:
            self.restarts += 1
            self.start(slot, worker_id)

    def settle(self, timeout=TERM_GRACE + 10):
        """Waits for every signalled worker to exit and be restarted."""
        deadline = time.time() + timeout
        while (self.stopping or self.pending) and time.time() < deadline:
            self.tend()
            time.sleep(0.2)

    def stop_all(self):
        """Stops the running workers; called after `settle`, so none is
        still stopping or waiting to restart."""
        failed = list(self.problems)
        running = list(self.procs.values())
        for worker_id, p in running:
            p.send_signal(signal.SIGTERM)
        for worker_id, p in running:
            try:
                p.wait(timeout=90)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                failed.append(f"{worker_id} did not stop within 90 s of TERM")
                continue
            if p.returncode != 0:
                failed.append(f"{worker_id} exited {p.returncode}")
        return failed

    def lease_takes(self):
        takes = collections.Counter()
        for f in self.logs.glob("*.log"):
            for line in ANSI.sub("", f.read_text(errors="replace")).splitlines():
                m = re.search(r"lease taken: reading shard=(\S+)", line)
                if m:
                    takes[m[1]] += 1
        return takes


class Stream:
    def __init__(self, name, rnd):
        self.k, self.name, self.rnd = client("kinesis"), name, rnd
        self.splits = self.merges = 0

    def wait_active(self):
        for _ in range(200):
            if self.k.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                return
            time.sleep(0.1)
        raise EnvironmentFailure(f"stream {self.name} did not become ACTIVE")

    def shards(self):
        out, token = [], None
        while True:
            res = self.k.list_shards(NextToken=token) if token else self.k.list_shards(StreamName=self.name)
            out += res["Shards"]
            token = res.get("NextToken")
            if not token:
                return out

    def open_shards(self):
        return [s for s in self.shards() if "EndingSequenceNumber" not in s["SequenceNumberRange"]]

    def reshard(self, lo=2, hi=8):
        """Splits a random open shard, or merges two adjacent ones, keeping
        the open count within lo..hi."""
        open_ = sorted(self.open_shards(), key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
        if self.splits == 0 and len(open_) < hi:
            merge = False  # a short soak still sees both kinds
        elif self.merges == 0 and len(open_) > lo:
            merge = True
        else:
            merge = len(open_) >= hi or (len(open_) > lo and self.rnd.random() < 0.5)
        if merge:
            i = self.rnd.randrange(len(open_) - 1)
            a, b = open_[i], open_[i + 1]
            self.k.merge_shards(StreamName=self.name, ShardToMerge=a["ShardId"], AdjacentShardToMerge=b["ShardId"])
            self.merges += 1
            log(f"merged {a['ShardId']} and {b['ShardId']}")
        else:
            s = self.rnd.choice(open_)
            lo_, hi_ = int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])
            self.k.split_shard(StreamName=self.name, ShardToSplit=s["ShardId"], NewStartingHashKey=str((lo_ + hi_) // 2))
            self.splits += 1
            log(f"split {s['ShardId']}")
        self.wait_active()


def drained(stream, table, last_seq):
    """Every closed shard at SHARD_END, every record put checkpointed."""
    items = {}
    d = client("dynamodb")
    for page in d.get_paginator("scan").paginate(TableName=table):
        for it in page["Items"]:
            items[it["leaseKey"]["S"]] = it["checkpoint"]["S"]
    for s in stream.shards():
        cp = items.get(s["ShardId"])
        if cp is None:
            return False
        closed = "EndingSequenceNumber" in s["SequenceNumberRange"]
        if closed and cp != "SHARD_END":
            return False
        want = last_seq.get(s["ShardId"])
        if not closed and want is not None and not (cp.isdigit() and int(cp) >= want):
            return False
    return True


def read_lake(bucket, prefix, work):
    """The lake's event ids (with repeats) and the DLQ's entries, read from
    moto directly."""
    s3 = client("s3")
    files = work / "lake"
    ids, dlq = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            key = o["Key"]
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if key.endswith(".parquet"):
                local = files / key
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(body)
            elif key.endswith(".jsonl"):
                dlq += [json.loads(line) for line in body.decode().splitlines() if line]
    parquet = list(files.rglob("*.parquet"))
    if parquet:
        ids = [r[0] for r in duckdb.sql(
            f"select event_id from read_parquet('{files}/**/*.parquet')").fetchall()]
    return ids, dlq, len(parquet)


def judge(producer, ids, dlq):
    want = collections.Counter("00000000-0000-4000-8000-%012d" % n for n in producer.good)
    got = collections.Counter(ids)
    refused_got = collections.Counter()
    garbage_got = 0
    for entry in dlq:
        raw = base64.b64decode(entry["data_base64"])
        try:
            n = int(json.loads(raw)["event_id"].rsplit("-", 1)[1])
            refused_got[n] += 1
        except (ValueError, KeyError, TypeError):
            garbage_got += 1
    missing = sorted(n for n in producer.good if "00000000-0000-4000-8000-%012d" % n not in got)
    dlq_missing = sorted(n for n in producer.refused if n not in refused_got)

    def where(ns):
        return [{"event": n, "shard": producer.placed[n][0], "sequence": producer.placed[n][1]}
                for n in ns[:20]]
    return {
        "missing_sample": where(missing),
        "dlq_missing_sample": where(dlq_missing),
        "missing_by_shard": dict(collections.Counter(producer.placed[n][0] for n in missing)),
        "events_in": len(producer.good),
        "events_in_lake": sum(got.values()),
        "duplicates": sum(c - 1 for c in got.values() if c > 1),
        "missing": sum(1 for i in want if i not in got),
        "unexpected": sum(1 for i in got if i not in want),
        "dlq_expected": len(producer.refused) + producer.garbage,
        "dlq_found": len(dlq),
        "dlq_duplicates": sum(c - 1 for c in refused_got.values() if c > 1),
        "dlq_missing": len(dlq_missing),
        "dlq_garbage_expected": producer.garbage,
        "dlq_garbage_found": garbage_got,
    }


def soak(a, work):
    rnd = random.Random(a.seed)
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY
    run = f"soak-{os.getpid()}-{int(time.time())}"
    bucket = os.environ.get("PITWALL_TEST_S3_BUCKET", "pitwall-test")
    stream = Stream(run, rnd)
    stream.k.create_stream(StreamName=run, ShardCount=a.shards)
    stream.wait_active()
    proxy, port = start_proxy(a.s3_rate, a.dynamodb_rate, a.seed)
    try:
        workers = Workers(a.pitwall, run, f"s3://{bucket}/{run}", run, f"http://127.0.0.1:{port}",
                          work, rnd)
        return drive(a, rnd, stream, workers, port, bucket, run, work)
    finally:
        proxy.kill()


def drive(a, rnd, stream, workers, port, bucket, run, work):
    producer = Producer(run, a.rate, rnd)
    producer.start()
    for slot in range(a.workers):
        workers.start(slot)
    started = time.time()
    end = started + a.duration
    next_disrupt = started + rnd.uniform(5, 15)
    next_reshard = started + rnd.uniform(10, 25)
    while time.time() < end:
        time.sleep(0.5)
        check_environment(port)
        if producer.error:
            raise EnvironmentFailure(f"kinesalite stopped taking records: {producer.error}")
        workers.tend()
        if time.time() >= next_disrupt:
            workers.disrupt()
            next_disrupt = time.time() + rnd.uniform(a.disrupt_every / 2, a.disrupt_every * 1.5)
        if time.time() >= next_reshard:
            stream.reshard()
            next_reshard = time.time() + rnd.uniform(a.reshard_every / 2, a.reshard_every * 1.5)
    producer.stop.set()
    producer.join()
    workers.settle()
    log(f"producer stopped after {len(producer.good)} valid events; draining with the faults on")
    deadline = time.time() + a.drain_timeout
    while not drained(stream, run, producer.last_seq):
        check_environment(port)
        if time.time() > deadline:
            break
        time.sleep(1)
    drain_s = round(time.time() - (started + a.duration), 1)
    stopped = workers.stop_all()
    faults = check_environment(port)
    ids, dlq, files = read_lake(bucket, run, work)
    verdict = judge(producer, ids, dlq)
    takes = workers.lease_takes()
    verdict.update({
        "seconds": a.duration, "drain_seconds": drain_s,
        "drained": time.time() <= deadline, "workers": a.workers,
        "records_in": producer.records, "lake_files": files,
        **fault_figures(faults),
        "lease_takes": sum(takes.values()), "lease_moves": sum(takes.values()) - len(takes),
        "kills": workers.kills, "terms": workers.terms, "restarts": workers.restarts,
        "term_exit_seconds_max": max(workers.term_exit_seconds, default=None),
        "splits": stream.splits, "merges": stream.merges, "shards_total": len(stream.shards()),
        "worker_exit_problems": stopped,
        "credential_leaks": leaks(workers.logs, [SECRET_KEY, PII_KEY]),
    })
    return verdict


def ok(v):
    return (v["duplicates"] == 0 and v["missing"] == 0 and v["unexpected"] == 0
            and v["dlq_found"] == v["dlq_expected"] and v["dlq_duplicates"] == 0
            and v["dlq_missing"] == 0 and v["drained"] and not v["worker_exit_problems"]
            and not v["credential_leaks"])


def report(v):
    print(f"{v['seconds']:.0f} s, {v['workers']} workers: {v['events_in']} valid events in "
          f"({v['records_in']} records), {v['events_in_lake']} in the lake in {v['lake_files']} files")
    print(f"  duplicates {v['duplicates']}, missing {v['missing']}, unexpected {v['unexpected']}; "
          f"DLQ {v['dlq_found']} of {v['dlq_expected']} (duplicates {v['dlq_duplicates']}, missing {v['dlq_missing']})")
    print("  faults: " + ", ".join(f"{k} {n}" for k, n in v["faults"].items()))
    print(f"  retries {v['retries']}; lease moves {v['lease_moves']} ({v['lease_takes']} takes); "
          f"kills {v['kills']}, TERMs {v['terms']} (slowest exit {v['term_exit_seconds_max']} s), restarts {v['restarts']}; "
          f"splits {v['splits']}, merges {v['merges']} ({v['shards_total']} shards in all); "
          f"drained {v['drain_seconds']} s after the end")
    if v["missing"]:
        print(f"  missing by shard: {v['missing_by_shard']}; first: {v['missing_sample'][:5]}")
    print(f"  credentials in the workers' logs: {len(v['credential_leaks'])} files")
    for p in v["worker_exit_problems"]:
        print(f"  worker: {p}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600, help="seconds of records, kills and reshards")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--rate", type=int, default=200, help="records per second, about")
    ap.add_argument("--s3-rate", type=float, default=0.1, help="share of S3 calls faulted")
    ap.add_argument("--dynamodb-rate", type=float, default=0.05, help="share of DynamoDB calls faulted")
    ap.add_argument("--disrupt-every", type=float, default=20, help="seconds between kills, about")
    ap.add_argument("--reshard-every", type=float, default=30, help="seconds between reshards, about")
    ap.add_argument("--drain-timeout", type=float, default=240)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pitwall", default=None, help="pitwall binary (default: release build in CARGO_TARGET_DIR)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    a = ap.parse_args()
    a.pitwall = a.pitwall or default_pitwall()
    run(a, "pitwall-soak-", ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS"), soak, ok, report)

if __name__ == "__main__":
    main()
