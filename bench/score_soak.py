#!/usr/bin/env python3
"""Fault soak of the score path: two `pitwall score watch` processes (one
holds the state's lease, one waits) on an S3 state, with the lease in
DynamoDB, both on moto behind crates/pitwall/tests/fault_proxy.py,
publishing to a Kafka broker (tansu) with the schema in Glue (moto), while
a simulated fleet's rentals and telemetry land in the lake all along
(bench/score_fleet.py: late uploads, resent uploads), watchers are killed
(-9) or stopped (TERM) and restarted about every 20 s, and a rescore and a
model change (`score run --state --rescore-from/--rescore-to`, `--model-change`)
are run once each beside them, as an on-call engineer would.

    python3 bench/score_soak.py [--duration 600] [--cars 60] [--seed 1] [--pitwall BIN] [--json]

S3 meets 500, 503, SlowDown, connections reset mid-body, slow answers,
stalled PUTs and answers held past the clients' timeouts (the state's
create-if-absent commit among them); DynamoDB meets throttling, slow and
held answers. Bad input, once each: a telemetry file that is not Parquet
(removed again once a cycle failed on it), a rentals file cut short for a
few cycles, and a model file with a NaN multiplier given to
`--model-change` (must be refused).

When the time is up the faults stop, the last uploads land, and the soak
waits for a committed run past them and its publication; then the
watchers are stopped and the verdict (bench/score_verdict.py) is made:
  - the state equals the uninterrupted chain: the same committed runs
    replayed one by one on a local state without faults, each with exactly
    the telemetry files its entry had seen (rental results and member
    snapshot, value for value);
  - on the topic (read_committed, decoded by AWS's Glue deserializer):
    every record is the record its run gave the member in the replay, no
    member's as_of goes backwards or repeats, no record comes from a run
    that was not committed, every change a committed run made is there
    unless a later change overtook it before any publication could send
    it, and each eligible member's last record equals the state's;
  - the run log is one chain (seq 1..n), and no watcher committed after
    the tap had seen another watcher take the lease;
  - the secret key and the PII key made up for the run appear in no log.
Figures: faults by kind, retries, kills, TERMs, lease hand-overs, cycles
committed / held / failed / publish-failed, publications made up later.
Exit 0 when every check holds, 1 when one does not, 2 on an ENVIRONMENT
FAILURE (moto or tansu stopped answering: the run says nothing about
pitwall).
"""
import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

from score_fleet import Fleet
from score_verdict import (Tap, differ, export, last_publication_stands, judge_topic, lease_violations, publications, read_topic,
                           records_of, replay, wait_settled)
from soak_common import (S3_FAULTS, EnvironmentFailure, check_environment, client, default_pitwall,
                         fault_figures, leaks, log, proxy_post, run, start_proxy)

SECRET_KEY = "soakSecret" + os.urandom(12).hex()
PII_KEY = "soakPii" + os.urandom(12).hex()
EVERY_S = 2
FAILOVER_S = 6
# The chart gives the watcher's pod 300 s after SIGTERM (score.watch.
# terminationGracePeriodSeconds): the cycle under way finishes, and under
# these faults one can take a minute or more (two answers held past the
# client's 30 s in a row).
TERM_GRACE = 300
CYCLE_METRIC = re.compile(r'^pitwall_watch_cycles_total\{outcome="(\w+)"\} (\d+)', re.M)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Watchers:
    """The two watchers: started, killed, stopped, restarted, their logs,
    cycle counts and the runs each committed kept."""

    def __init__(self, a, run, bucket, via, work, rnd):
        self.a, self.run, self.bucket, self.via, self.work, self.rnd = a, run, bucket, via, work, rnd
        self.model = None
        self.procs = {}  # slot -> (worker id, Popen, port)
        self.incarnation = 0
        self.kills = self.terms = self.restarts = 0
        self.stopping, self.pending, self.problems = [], [], []
        self.cycles = {}  # worker id -> {outcome: n} as last scraped
        self.runs = {}  # run_id -> worker id
        self.want_rollout = False  # set by the model change's thread, done by `tend`

    def args(self, worker_id, port):
        a, b = self.a, f"s3://{self.bucket}/{self.run}"
        return [a.pitwall, "score", "watch", "--state", f"{b}/state", "--rentals", f"{b}/rentals",
                "--telemetry", f"{b}/lake/telemetry.kinematics", "--every", f"{EVERY_S}s",
                "--failover", f"{FAILOVER_S}s", "--leases", f"dynamodb:{self.run}", "--worker-id", worker_id,
                "--out", str(self.work / "out" / worker_id), "--listen", f"127.0.0.1:{port}",
                "--model", str(self.model), "--brokers", self.a.brokers, "--topic", self.run,
                "--registry", f"glue:{GLUE_REGISTRY}", "--subject", f"{self.run}-value", "--kafka-timeout", "10s", *self.a.kafka]

    def env(self):
        return dict(os.environ, AWS_ENDPOINT_URL_S3=self.via, AWS_ENDPOINT_URL_DYNAMODB=self.via,
                    PITWALL_PII_KEY=PII_KEY, PITWALL_LOG="info")

    def start(self, slot):
        self.incarnation += 1
        worker_id, port = f"w{slot}-{self.incarnation}", free_port()
        err = open(self.work / "logs" / f"{worker_id}.log", "w")
        p = subprocess.Popen(self.args(worker_id, port), env=self.env(), stdout=subprocess.DEVNULL, stderr=err)
        self.procs[slot] = (worker_id, p, port)

    def signal(self, slot, kill):
        worker_id, p, port = self.procs.pop(slot)
        if kill:
            p.kill()
            self.kills += 1
        else:
            p.send_signal(signal.SIGTERM)
            self.terms += 1
        self.stopping.append((slot, worker_id, p, "killed (-9)" if kill else "stopped (TERM)", time.time()))

    def disrupt(self, holder):
        """Kills or stops a watcher, the lease holder two times in three."""
        if not self.procs:
            return
        slots = sorted(self.procs)
        held = [s for s in slots if self.procs[s][0] == holder]
        slot = held[0] if held and self.rnd.random() < 2 / 3 else self.rnd.choice(slots)
        self.signal(slot, self.rnd.random() < 0.6)

    def rollout(self):
        """Every watcher stopped and started again (a new model): one at a
        time, as a Deployment's rolling update does."""
        for slot in sorted(self.procs):
            self.signal(slot, kill=False)

    def tend(self):
        if self.want_rollout:
            self.want_rollout = False
            self.rollout()
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
            elif how.startswith("stopped") and p.returncode != 0:
                self.problems.append(f"{worker_id} exited {p.returncode} after TERM")
            log(f"watcher {worker_id} {how}, exit {p.returncode} after {time.time() - t:.1f} s")
            self.pending.append((now + self.rnd.uniform(0.5, 4), slot))
        self.stopping = still
        due = [x for x in self.pending if x[0] <= now]
        self.pending = [x for x in self.pending if x[0] > now]
        for _, slot in due:
            self.restarts += 1
            self.start(slot)
        for slot, (worker_id, p, port) in list(self.procs.items()):
            if p.poll() is not None:
                self.problems.append(f"{worker_id} exited {p.returncode} on its own")
                del self.procs[slot]
                self.pending.append((now + 1, slot))
        self.scrape()

    def scrape(self):
        for worker_id, p, port in self.procs.values():
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
            except OSError:
                continue
            self.cycles[worker_id] = {k: int(n) for k, n in CYCLE_METRIC.findall(text)}
        for d in (self.work / "out").glob("*/*/run.json"):
            worker_id = d.parent.parent.name
            if str(d) in self.runs.get("_read", ()):
                continue
            try:
                run_id = json.loads(d.read_text())["run_id"]
            except (OSError, ValueError, KeyError):
                continue  # being written
            self.runs.setdefault("_read", set()).add(str(d))
            self.runs[run_id] = worker_id

    def settle(self, timeout=TERM_GRACE + 10):
        deadline = time.time() + timeout
        while (self.stopping or self.pending) and time.time() < deadline:
            self.tend()
            time.sleep(0.2)

    def stop_all(self):
        for slot in sorted(self.procs):
            self.signal(slot, kill=False)
            self.terms -= 1  # the end of the soak, not a disruption
        deadline = time.time() + TERM_GRACE
        while self.stopping and time.time() < deadline:
            self.tend()
            self.pending = []
            time.sleep(0.2)
        self.scrape()

    def cycle_counts(self):
        total = {}
        for counts in self.cycles.values():
            for k, n in counts.items():
                total[k] = total.get(k, 0) + n
        return total


def models(work, pitwall):
    """The soak's model (eligible from 0.5 km: a soak drives little), the
    changed one, and one with a NaN multiplier."""
    text = subprocess.run([pitwall, "score", "model"], check=True, capture_output=True, text=True).stdout
    text = text.replace("eligible_min_distance_km = 100.0", "eligible_min_distance_km = 0.5")
    one = work / "model-1.toml"
    one.write_text(text.replace('name = "psf-v1"', 'name = "soak"'))
    two = work / "model-2.toml"
    two.write_text(one.read_text().replace('version = "1"', 'version = "2"')
                   .replace("eligible_min_distance_km = 0.5", "eligible_min_distance_km = 0.4"))
    bad = work / "model-nan.toml"
    lines = two.read_text().replace('version = "2"', 'version = "3"').splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("harsh_brake = { multiplier"))
    lines[i] = "harsh_brake = { multiplier = nan, cap = 20.0 }"
    bad.write_text("\n".join(lines) + "\n")
    return one, two, bad


def model_id(path):
    """name@version, as the state's run log names a model."""
    text = path.read_text()
    name = re.search(r'^name = "([^"]+)"', text, re.M)[1]
    version = re.search(r'^version = "([^"]+)"', text, re.M)[1]
    return f"{name}@{version}"


# One Glue registry for every soak, a schema per run: Glue allows 10
# registries per account (moto too), and a registry per run ran out of them
# after ten soaks against one moto.
GLUE_REGISTRY = "pitwall-score-soak"


def one_off(a, watchers, run, bucket, extra, tries=8):
    """`pitwall score run --state --as-of now --leases` beside the watchers,
    through the faults: it asks the watcher for the lease and holds it while
    it runs. Run again (at a new now) while it fails on a fault. Returns
    (exit code, stderr, tries)."""
    b = f"s3://{bucket}/{run}"
    for attempt in range(1, tries + 1):
        out = watchers.work / "oneoff" / f"{int(time.time() * 1000)}"
        args = [a.pitwall, "score", "run", "--state", f"{b}/state", "--rentals", f"{b}/rentals", "--telemetry",
                f"{b}/lake/telemetry.kinematics", "--out", str(out), "--as-of", "now", "--leases",
                f"dynamodb:{run}", "--failover", f"{FAILOVER_S}s", "--lease-wait", "120s", *extra]
        with open(watchers.work / "logs" / f"oneoff-{out.name}.log", "w") as err:
            code = subprocess.run(args, env=watchers.env(), stdout=subprocess.DEVNULL, stderr=err).returncode
        text = (watchers.work / "logs" / f"oneoff-{out.name}.log").read_text()
        if code == 0 or "nan" in " ".join(extra) or "finite" in text:
            return code, text, attempt
        log(f"one-off run exited {code}, trying again: {text.strip().splitlines()[-1][:200] if text.strip() else ''}")
        time.sleep(1)
    return code, text, tries


def create_topic(brokers, topic):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": brokers})
    for fut in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        fut.result(30)


def soak(a, work):
    rnd = random.Random(a.seed)
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY
    run = f"score-soak-{os.getpid()}-{int(time.time())}"
    bucket = os.environ.get("PITWALL_TEST_S3_BUCKET", "pitwall-test")
    for d in ("logs", "out", "oneoff", "cache"):
        (work / d).mkdir(parents=True, exist_ok=True)
    kafka = Broker(a, run)
    # after500 too: a write S3 answers with a 500 after it took effect.
    proxy, port = start_proxy(a.s3_rate, a.dynamodb_rate, a.seed, s3_faults=S3_FAULTS + ",after500")
    tap = Tap(bucket, run, run)
    try:
        watchers = Watchers(a, run, bucket, f"http://127.0.0.1:{port}", work, rnd)
        v = drive(a, rnd, watchers, tap, port, bucket, run, work, kafka)
        v["kafka_faults"] = kafka.faults
        return v
    finally:
        tap.stop.set()
        proxy.kill()
        kafka.stop()


class Broker:
    """The topic's broker: tansu (scripts/services.sh), or librdkafka's mock
    cluster as a process (crates/publish/examples/kafka_mock_cluster.rs),
    where transactions are real and produce and commit errors are pushed
    every few seconds."""

    def __init__(self, a, topic):
        self.proc, self.faults, self.quieted = None, {}, threading.Event()
        if a.broker == "tansu":
            a.brokers = os.environ["PITWALL_TEST_KAFKA"]
            try:
                create_topic(a.brokers, topic)
            except Exception as e:  # noqa: BLE001
                raise EnvironmentFailure(f"the broker did not create the topic: {e}")
            return
        if not os.path.exists(a.mock_cluster):
            raise SystemExit(f"{a.mock_cluster} is not built: cargo build --release -p pitwall-publish "
                             "--example kafka_mock_cluster (or give --mock-cluster)")
        self.proc = subprocess.Popen([a.mock_cluster, topic, "7000", str(a.seed)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("bootstrap "):
            raise EnvironmentFailure(f"the mock cluster did not start: {line!r}")
        a.brokers = line.split()[1]
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.proc.stdout:
            if line.startswith("faults "):
                self.faults = json.loads(line[len("faults "):])
            elif line.strip() == "quiet":
                self.quieted.set()

    def quiet(self):
        """No more broker errors (the end of the soak), confirmed by the
        cluster: a binary built before it answered `quiet` goes on pushing
        errors, and the soak would wait for a publication that cannot be
        made (this was the mock form's one unexplained failure)."""
        if self.proc:
            self.proc.stdin.write("quiet\n")
            self.proc.stdin.flush()
            if not self.quieted.wait(30):
                raise EnvironmentFailure(
                    "the mock cluster did not confirm that its faults stopped: rebuild it "
                    "(cargo build -p pitwall-publish --example kafka_mock_cluster)")

    def stop(self):
        if self.proc:
            self.proc.stdin.close()
            self.proc.kill()


def drive(a, rnd, watchers, tap, port, bucket, run, work, kafka):
    one, two, bad = models(work, a.pitwall)
    ids = {model_id(one): one, model_id(two): two}
    watchers.model = one
    t0 = int(time.time()) * 1000
    fleet = Fleet(client("s3"), bucket, run, work / "cache", a.cars, max(2, a.cars * 2 // 3), t0,
                  t0 + int(a.duration * 1000), rnd)
    fleet.backfill()
    tap.start()
    for slot in range(2):
        watchers.start(slot)
    events = Events(a, rnd, t0)
    end = t0 / 1000 + a.duration
    next_disrupt = time.time() + rnd.uniform(a.disrupt_every / 2, a.disrupt_every * 1.5)
    while time.time() < end or not fleet.done() or not events.finished():
        time.sleep(0.25)
        check_environment(port)
        if tap.error:
            raise EnvironmentFailure(f"moto stopped answering the tap: {tap.error}")
        fleet.tick(int(time.time() * 1000))
        watchers.tend()
        if time.time() < end and time.time() >= next_disrupt:
            watchers.disrupt(tap.owners[-1][1] if tap.owners else None)
            next_disrupt = time.time() + rnd.uniform(a.disrupt_every / 2, a.disrupt_every * 1.5)
        events.step(a, watchers, fleet, tap, bucket, run, (two, bad))
    log("fleet done; faults off, waiting for the watchers to go quiet past the last upload")
    proxy_post(port, {"rate": 0, "dynamodb_rate": 0})
    kafka.quiet()
    watchers.settle()
    settled = wait_settled(tap, fleet.last_landed_ms, a.settle_timeout,
                           lambda: (check_environment(port), watchers.tend()),
                           lambda: last_publication_stands(client("s3"), bucket, run, run))
    watchers.stop_all()
    tap.stop.set()
    tap.join()
    tap.poll()
    faults = check_environment(port)
    return verdict(a, watchers, tap, fleet, events, ids, faults, settled, bucket, run, work)


class Events:
    """The soak's one-time events, each at its share of the duration, one
    at a time: a bad file stays until a watcher's cycle failed naming it
    (or 75 s passed), and a one-off run goes on in a thread of its own
    while the fleet lands and the watchers are tended."""

    def __init__(self, a, rnd, t0):
        d = a.duration
        self.at = {"not_parquet": 0.2 * d, "truncated_rentals": 0.3 * d, "rescore": 0.45 * d,
                   "model_change": 0.65 * d}
        self.t0 = t0 / 1000
        self.done = {}
        self.bad = None  # (what, key, failed cycles before, remove by)
        self.busy = None  # the thread of a one-off run

    def finished(self):
        return len(self.done) == len(self.at) and not self.bad and not (self.busy and self.busy.is_alive())

    def step(self, a, watchers, fleet, tap, bucket, run, models_):
        now = time.time()
        if self.bad:
            what, key, until = self.bad
            met = named_in_an_error(key, watchers.work / "logs")
            if met or now > until:
                (fleet.remove if what == "not_parquet" else fleet.restore_rentals)(key)
                log(f"put right {key}; a cycle failed on it: {met}")
                self.bad = None
            return
        if self.busy and self.busy.is_alive():
            return
        due = [k for k, t in self.at.items() if k not in self.done and now >= self.t0 + t]
        if not due:
            return
        k = due[0]
        self.done[k] = {}
        if k == "not_parquet":
            key = fleet.not_parquet(int(now * 1000))
        elif k == "truncated_rentals":
            key = fleet.truncate_rentals()
        else:
            self.busy = threading.Thread(target=lambda: self.done[k].update(
                getattr(self, k)(a, watchers, fleet, tap, bucket, run, models_)), daemon=True)
            self.busy.start()
            return
        log(f"bad input: {k} at {key}")
        self.done[k]["key"] = key
        # Long enough for a watcher to take the lease and meet it, whatever
        # held the cycle before (an answer hung past the client's 30 s).
        self.bad = (k, key, now + 75)

    def rescore(self, a, watchers, fleet, tap, bucket, run, _):
        head = tap.head()
        extra = ["--model", str(watchers.model), "--rescore-from",
                 iso_s(fleet.t0 - 300_000), "--rescore-to", iso_s(fleet.t0)]
        code, text, tries = one_off(a, watchers, run, bucket, extra)
        log(f"rescore exited {code} after {tries} tries (head was {head and head['seq']})")
        return {"exit": code, "tries": tries, "error": text.strip()[-300:] if code else None}

    def model_change(self, a, watchers, fleet, tap, bucket, run, models_):
        two, bad = models_
        code_bad, text_bad, _ = one_off(a, watchers, run, bucket,
                                        ["--model-change", "--model", str(bad)], tries=1)
        code, text, tries = one_off(a, watchers, run, bucket,
                                    ["--model-change", "--model", str(two)])
        log(f"NaN model exited {code_bad}; model change exited {code} after {tries} tries")
        if code == 0:
            watchers.model = two
            watchers.want_rollout = True
        return {"exit": code, "tries": tries, "nan_model_exit": code_bad,
                "nan_model_error": text_bad.strip().splitlines()[-1][:300] if text_bad.strip() else ""}


def iso_s(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def named_in_an_error(key, logs):
    """Whether a watcher logged a failed cycle naming the file `key`."""
    name = key.rsplit("/", 1)[-1]
    return any(name in line and "a cycle failed" in line
               for f in logs.glob("w*.log") for line in f.read_text(errors="replace").splitlines())


def bad_input_checks(events, logs):
    """Each bad input failed a cycle or was refused, with an error naming it."""
    out = {}
    for k in ("not_parquet", "truncated_rentals"):
        key = (events.done.get(k) or {}).get("key")
        out[k] = {"key": key, "named_in_an_error": bool(key) and named_in_an_error(key, logs)}
    mc = events.done.get("model_change") or {}
    out["nan_model"] = {"exit": mc.get("nan_model_exit"), "error": mc.get("nan_model_error"),
                        "refused": mc.get("nan_model_exit") == 1 and "finite" in (mc.get("nan_model_error") or "")}
    return out


def verdict(a, watchers, tap, fleet, events, ids, faults, settled, bucket, run, work):
    log(f"verdict: {len(tap.entries)} committed runs; replaying the chain")
    rentals = work / "cache" / run / "rentals"
    state_export = export(a.pitwall, f"s3://{bucket}/{run}/state", work / "export-soak")
    replay_state, outs, replay_problems = replay(a.pitwall, work, tap, work / "cache", run, rentals, ids)
    replay_export = export(a.pitwall, replay_state, work / "export-replay")
    rr = differ(state_export, replay_export, "rental_results", skip=("final_run_id",))
    ms_ = differ(state_export, replay_export, "member_scores")
    records, errors = read_topic(a.brokers, run, GLUE_REGISTRY)
    with open(work / "topic.jsonl", "w") as f:  # for a post-mortem
        for r in records:
            f.write(json.dumps(r, default=str) + "\n")
    by_seq, aborted = publications(client("s3"), bucket, run, run)
    if a.broker == "mock":
        # The mock cluster hands aborted transactions' records to a
        # read_committed consumer too (librdkafka's mock does not enforce
        # the isolation): set aside those of publications the ledger says
        # aborted, which a broker would not show.
        shown = len(records)
        records = [r for r in records if r[3] not in aborted]
        log(f"{shown - len(records)} records of aborted publications set aside")
    pub_ids = {r[3] for r in records}
    committed_pubs = {s for s, ids_ in by_seq.items() if any(i in pub_ids for i in ids_)}
    final = records_of(state_export / "member_scores.parquet")
    topic = judge_topic(records, tap.entries, outs, final, committed_pubs)
    seqs = sorted(tap.entries)
    commits = [(ms_of(tap.entries[s]["committed_at"]), watchers.runs.get(tap.entries[s]["run_id"]))
               for s in seqs]
    watcher_commits = [(t, w) for t, w in commits if w]
    head = seqs[-1] if seqs else 0
    cycles = watchers.cycle_counts()
    v = {
        "seconds": a.duration, "cars": a.cars, "rentals": fleet.rentals, **fleet.counts,
        "committed_runs": len(seqs), "one_chain": seqs == list(range(1, head + 1)),
        "tap_missed_seen": sorted(tap.missed), "settled": settled,
        "replay_problems": replay_problems,
        "rental_results_differ": list(rr), "member_snapshot_differs": list(ms_),
        "topic_decode_errors": errors[:5], **topic,
        "publications_committed": len(committed_pubs),
        "runs_published_later": sum(1 for s in seqs if s not in committed_pubs and any(p > s for p in committed_pubs)),
        "commits_by_watchers": len(watcher_commits), "commits_by_one_off_runs": len(commits) - len(watcher_commits),
        "commits_after_lease_lost": lease_violations(tap.owners, watcher_commits),
        "broker": a.broker, "aborted_publications": len(aborted),
        "lease_handovers": max(0, len([o for o in tap.owners if o[1]]) - 1),
        "kills": watchers.kills, "terms": watchers.terms, "restarts": watchers.restarts,
        "cycles": cycles, "watcher_problems": watchers.problems,
        "events": events.done, "bad_input": bad_input_checks(events, work / "logs"),
        "credential_leaks": leaks(work / "logs", [SECRET_KEY, PII_KEY]),
        **fault_figures(faults),
    }
    return v


def ms_of(rfc3339):
    from datetime import datetime
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def ok(v):
    bad = v["bad_input"]
    return (v["one_chain"] and v["settled"] and not v["tap_missed_seen"] and not v["replay_problems"]
            and v["rental_results_differ"] == [0, 0] and v["member_snapshot_differs"] == [0, 0]
            and not v["topic_decode_errors"] and v["as_of_backwards"] == 0 and v["sent_twice"] == 0
            and v["from_uncommitted_runs"] == 0 and v["differs_from_chain"] == 0 and v["never_published"] == 0
            and v["stale_at_end"] == 0 and v["changes_lost"] == 0 and not v["commits_after_lease_lost"]
            and not v["credential_leaks"] and not v["watcher_problems"]
            and v["events"].get("rescore", {}).get("exit") == 0
            and v["events"].get("model_change", {}).get("exit") == 0
            and bad["nan_model"]["refused"] and bad["not_parquet"]["named_in_an_error"]
            and bad["truncated_rentals"]["named_in_an_error"])


def report(v):
    print(f"{v['seconds']:.0f} s, {v['cars']} cars: {v['rentals']} rentals, {v['samples']} samples in "
          f"{v['telemetry_files']} files ({v['late_uploads']} late, {v['resent_uploads']} resent)")
    print(f"  state: {v['committed_runs']} committed runs, one chain {v['one_chain']}; against the replayed "
          f"chain: rental results differ {v['rental_results_differ']}, member snapshot differs "
          f"{v['member_snapshot_differs']}")
    print(f"  topic: {v['records_on_topic']} records in {v['publications_committed']} publications; as_of backwards "
          f"{v['as_of_backwards']}, sent twice {v['sent_twice']}, from uncommitted runs {v['from_uncommitted_runs']}, "
          f"differ from the chain {v['differs_from_chain']}; changes {v['changes_made']} "
          f"(overtaken {v['changes_overtaken']}, lost {v['changes_lost']}); eligible {v['members_eligible_at_end']}, "
          f"never published {v['never_published']}, stale {v['stale_at_end']}; runs published later "
          f"{v['runs_published_later']}")
    print(f"  commits: {v['commits_by_watchers']} by watchers, {v['commits_by_one_off_runs']} one-off; after a "
          f"lost lease {len(v['commits_after_lease_lost'])}; lease hand-overs {v['lease_handovers']}")
    print(f"  kills {v['kills']}, TERMs {v['terms']}, restarts {v['restarts']}; cycles "
          + ", ".join(f"{k} {n}" for k, n in sorted(v["cycles"].items())))
    print("  faults: " + ", ".join(f"{k} {n}" for k, n in v["faults"].items()) + f"; retries {v['retries']}")
    print(f"  broker {v['broker']}: " + ", ".join(f"{k} {n}" for k, n in v.get("kafka_faults", {}).items())
          + f"; publications aborted {v['aborted_publications']}")
    bad = v["bad_input"]
    print(f"  bad input: not-Parquet file named in an error {bad['not_parquet']['named_in_an_error']}, cut rentals "
          f"file named {bad['truncated_rentals']['named_in_an_error']}, NaN model refused {bad['nan_model']['refused']}")
    ev = v["events"]
    print(f"  rescore exit {ev.get('rescore', {}).get('exit')}, model change exit "
          f"{ev.get('model_change', {}).get('exit')}; credentials in logs: {len(v['credential_leaks'])} files")
    for p in v["watcher_problems"] + v["replay_problems"]:
        print(f"  problem: {p}")
    for d in v["differs_sample"] + v["lost_sample"]:
        print(f"  topic: {d}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600, help="seconds of fleet, kills and events")
    ap.add_argument("--cars", type=int, default=60)
    ap.add_argument("--s3-rate", type=float, default=0.02,
                    help="share of S3 calls faulted (a cycle makes about a hundred)")
    ap.add_argument("--dynamodb-rate", type=float, default=0.05, help="share of DynamoDB calls faulted")
    ap.add_argument("--disrupt-every", type=float, default=20, help="seconds between kills, about")
    ap.add_argument("--settle-timeout", type=float, default=180)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pitwall", default=None, help="pitwall binary (default: release build in CARGO_TARGET_DIR)")
    ap.add_argument("--broker", choices=("tansu", "mock"), default="tansu",
                    help="tansu (no transactions), or librdkafka's mock cluster with produce and commit errors")
    ap.add_argument("--mock-cluster", default=None,
                    help="the mock cluster's binary (default: examples/kafka_mock_cluster beside --pitwall)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    a = ap.parse_args()
    a.pitwall = a.pitwall or default_pitwall()
    # tansu has no transactions (no EndTxn): the ledger alone keeps a
    # publication from landing twice there.
    a.kafka = ["--transactional=false"] if a.broker == "tansu" else []
    a.mock_cluster = a.mock_cluster or os.path.join(os.path.dirname(a.pitwall), "examples", "kafka_mock_cluster")
    run(a, "pitwall-score-soak-", ("AWS_ENDPOINT_URL", "PITWALL_TEST_KAFKA"), soak, ok, report)

if __name__ == "__main__":
    main()
