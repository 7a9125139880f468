"""The verdict of bench/score_soak.py: what the state, the topic and the
lease table say after the soak, each checked against a reference that is
not the watchers'.

- `Tap` watches the state and the lease table from outside (moto
  directly, no faults) while the soak runs: each run-log entry as it is
  committed, with the telemetry files its run had seen (read before the
  state's garbage collection removes them), and each change of the lease's
  owner.
- `replay` runs the same chain again without faults, kills or watchers:
  one `pitwall score run --state` per committed entry, on a local state, at
  the entry's as_of, with exactly the telemetry files that entry had seen
  and the entry's model, rescore and model change. Its state is the
  uninterrupted chain the soak's state must equal, and each of its runs'
  member_changes.parquet is the record a member had after that run.
- `read_topic` reads the topic with a read_committed consumer and AWS's
  Glue deserializer (not pitwall's client).
"""
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time

import duckdb

from soak_common import client, log

RATE_FIELDS = ("harsh_accel_per_100km", "harsh_brake_per_100km", "unstable_stop_per_100km",
               "speeding_pct", "excess_speeding_pct")


class Tap(threading.Thread):
    """Polls the state's run log and the lease table every `every` s."""

    def __init__(self, bucket, prefix, table, every=0.25):
        super().__init__(daemon=True)
        self.s3, self.dynamodb = client("s3"), client("dynamodb")
        self.bucket, self.prefix, self.table, self.every = bucket, prefix, table, every
        self.entries = {}  # seq -> entry
        self.seen = {}  # seq -> keys of the telemetry files its run had seen
        self.missed = set()  # seqs whose seen file was gone before the tap read it
        self.owners = []  # (wall ms, owner, counter) at each change
        self.stop = threading.Event()
        self.error = None

    def run(self):
        while not self.stop.is_set():
            try:
                self.poll()
            except Exception as e:  # noqa: BLE001 — moto down is reported by the soak
                self.error = e
            self.stop.wait(self.every)

    def poll(self):
        self.poll_lease()
        state = f"{self.prefix}/state"
        names = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{state}/log/"):
            names += [o["Key"] for o in page.get("Contents", [])]
        for key in sorted(names):
            digits = key.rsplit("/", 1)[-1].removesuffix(".json")
            if not (len(digits) == 12 and digits.isdigit()) or int(digits) in self.entries:
                continue
            entry = json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            seq = entry["seq"]
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=f"{state}/{entry['files']['seen']}")["Body"].read()
                self.seen[seq] = seen_keys(body, self.bucket)
            except self.s3.exceptions.NoSuchKey:
                self.missed.add(seq)
            self.entries[seq] = entry

    def poll_lease(self):
        try:
            items = self.dynamodb.scan(TableName=self.table)["Items"]
        except self.dynamodb.exceptions.ResourceNotFoundException:
            return
        for it in items:
            if not it["leaseKey"]["S"].startswith("score-watch:"):
                continue
            owner = it.get("leaseOwner", {}).get("S")
            counter = int(it.get("leaseCounter", {}).get("N", "0"))
            if not self.owners or self.owners[-1][1:] != (owner, counter):
                if not self.owners or self.owners[-1][1] != owner:
                    self.owners.append((time.time() * 1000, owner, counter))

    def head(self):
        return self.entries[max(self.entries)] if self.entries else None


def seen_keys(parquet, bucket):
    with tempfile.NamedTemporaryFile(suffix=".parquet") as f:
        f.write(parquet)
        f.flush()
        names = [r[0] for r in duckdb.sql(f"SELECT file FROM read_parquet('{f.name}')").fetchall()]
    return {n.removeprefix(f"s3://{bucket}/") for n in names}


def lease_violations(owners, commits):
    """Commits made by a watcher after another owner had been seen holding
    the lease: `commits` are (wall ms, watcher) of each watcher commit.
    The tap sees a takeover a little after it happened, so this finds
    every commit made after the takeover was seen, never a false one."""
    bad = []
    for at, who in commits:
        owner_then = None
        for t, owner, _ in owners:
            if t <= at:
                owner_then = owner
        if owner_then is not None and owner_then != who:
            bad.append({"committed_at_ms": at, "by": who, "owner": owner_then})
    return bad


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms) % 1000:03d}Z"


def replay(pitwall, work, tap, cache, prefix, rentals, models):
    """The uninterrupted chain, run locally; returns (state dir, {seq:
    out dir}, problems)."""
    root = pathlib.Path(work) / "replay"
    shutil.rmtree(root, ignore_errors=True)
    lake = root / "lake"
    outs, problems, placed = {}, [], set()
    for seq in sorted(tap.entries):
        e = tap.entries[seq]
        for key in sorted(tap.seen.get(seq, ())):
            if key in placed:
                continue
            dest = lake / key.removeprefix(f"{prefix}/lake/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pathlib.Path(cache) / key, dest)
            placed.add(key)
        out = root / "out" / f"{seq:06d}"
        args = [pitwall, "score", "run", "--state", str(root / "state"), "--rentals", str(rentals),
                "--telemetry", str(lake / "telemetry.kinematics"), "--as-of", iso(e["as_of_ms"]),
                "--out", str(out), "--model", str(models[e["model"]])]
        if e.get("rescore"):
            args += ["--rescore-from", iso(e["rescore"][0]), "--rescore-to", iso(e["rescore"][1])]
        if e.get("model_change"):
            args.append("--model-change")
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"replay of seq {seq} exited {r.returncode}: {r.stderr.strip()[-400:]}")
            break
        outs[seq] = out
    return root / "state", outs, problems


def export(pitwall, state, out):
    subprocess.run([pitwall, "score", "state", "export", "--state", str(state), "--out", str(out)],
                   check=True, capture_output=True)
    return out


def differ(a, b, table, skip=()):
    """Rows of `table` in export a and not in b, and the other way."""
    cols = [c[0] for c in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{a}/{table}.parquet')").fetchall()
            if c[0] not in skip]
    sel = ", ".join(f'"{c}"' for c in cols)
    q = (f"SELECT count(*) FROM (SELECT {sel} FROM read_parquet('{{x}}/{table}.parquet') EXCEPT ALL "
         f"SELECT {sel} FROM read_parquet('{{y}}/{table}.parquet'))")
    return (duckdb.sql(q.format(x=a, y=b)).fetchall()[0][0], duckdb.sql(q.format(x=b, y=a)).fetchall()[0][0])


RECORD_SQL = """SELECT member_id, eligible, status, score, grade, rentals_used, rentals_12m, distance_km_total,
    harsh_accel_per_100km, harsh_brake_per_100km, unstable_stop_per_100km, speeding_pct, excess_speeding_pct,
    model, epoch_ms(as_of),
    list_transform(recent_rentals, lambda x: struct_pack(i := x.rental_id, e := epoch_ms(x.end_at), d := x.distance_km,
                                                     s := x.score, g := x.grade))
    FROM read_parquet('{file}')"""


def records_of(file):
    """member_id -> the record as a tuple, from a member Parquet file."""
    out = {}
    for r in duckdb.sql(RECORD_SQL.format(file=file)).fetchall():
        recent = tuple((x["i"], x["e"], x["d"], x["s"], x["g"]) for x in r[15])
        out[r[0]] = tuple(r[1:15]) + (recent,)
    return out


def record_of_avro(v):
    rates = v["rates"]
    recent = tuple((x["rental_id"], ms(x["end_at"]), x["distance_km"], x["score"], x["grade"])
                   for x in v["recent_rentals"])
    return (v["eligible"], v["status"], v["score"], v["grade"], v["rentals_used"], v["rentals_12m"],
            v["distance_km_total"], *(rates[f] for f in RATE_FIELDS), v["model"], ms(v["as_of"]), recent)


def ms(t):
    return t if isinstance(t, int) else int(round(t.timestamp() * 1000))


def read_topic(brokers, topic, registry, quiet_s=5, limit_s=120):
    """Every committed record of the topic, decoded by AWS's Glue
    deserializer: [(partition, offset, key, publication id, value)]."""
    from aws_schema_registry import KafkaDeserializer, SchemaRegistryClient
    from confluent_kafka import Consumer
    glue = client("glue")
    deserializer = KafkaDeserializer(SchemaRegistryClient(glue, registry_name=registry))
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"verdict-{topic}-{os.getpid()}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    records, errors = [], []
    deadline, last = time.time() + limit_s, time.time()
    while time.time() < deadline and time.time() - last < quiet_s:
        m = consumer.poll(0.2)
        if m is None:
            continue
        if m.error():
            errors.append(str(m.error()))
            continue
        last = time.time()
        pub = dict(m.headers() or []).get("pitwall-publication", b"").decode()
        try:
            value = deserializer.deserialize(topic, m.value()).data
        except Exception as e:  # noqa: BLE001 — counted: a record another client cannot read
            errors.append(f"offset {m.offset()}: {e}")
            continue
        records.append((m.partition(), m.offset(), m.key().decode(), pub, value))
    consumer.close()
    return records, errors


def content(rec):
    """A record without its stamp (model, as_of): a publication stamps every
    record it sends with its run's, whichever run last changed the member."""
    return rec[:12] + rec[14:]


def judge_topic(records, entries, outs, final_members, publications):
    """What the topic says against the replay's records and the state."""
    seq_of_run = {e["run_id"]: s for s, e in entries.items()}
    history = {}  # member -> [(seq, content)] of each change the chain made
    for seq, out in sorted(outs.items()):
        for m, rec in records_of(out / "member_changes.parquet").items():
            history.setdefault(m, []).append((seq, content(rec)))
    v = {"records_on_topic": len(records), "as_of_backwards": 0, "sent_twice": 0, "from_uncommitted_runs": 0,
         "differs_from_chain": 0, "differs_sample": []}
    last, sent = {}, {}  # member -> last record; member -> [seq of each record's publication]
    for part, off, key, pub, value in sorted(records, key=lambda r: (r[0], r[1])):
        rec = record_of_avro(value)
        prev = last.get(key)
        if prev is not None and rec[13] < prev[13]:
            v["as_of_backwards"] += 1
        if prev is not None and content(rec) == content(prev):
            v["sent_twice"] += 1
        last[key] = rec
        seq = seq_of_run.get(value["run_id"])
        if seq is None:
            v["from_uncommitted_runs"] += 1
            continue
        sent.setdefault(key, []).append(seq)
        want = record_at(history.get(key, []), seq)
        stamp_ok = rec[12] == entries[seq]["model"] and rec[13] == entries[seq]["as_of_ms"]
        if want != content(rec) or not stamp_ok:
            v["differs_from_chain"] += 1
            if len(v["differs_sample"]) < 3:
                v["differs_sample"].append({"member": key, "seq": seq, "topic": repr(rec)[:300],
                                            "chain": repr(want)[:300]})
    eligible = {m: r for m, r in final_members.items() if r[0]}
    v["members_eligible_at_end"] = len(eligible)
    v["never_published"] = sum(1 for m in eligible if m not in last)
    v["stale_at_end"] = sum(1 for m, r in eligible.items() if m in last and content(last[m]) != content(r))
    v.update(coalesced(history, sent, publications))
    return v


def record_at(changes, seq):
    """A member's record after run `seq`: its last change at or before it."""
    found = None
    for s, rec in changes:
        if s <= seq:
            found = rec
    return found


def coalesced(history, sent, publications):
    """Every change of an eligible member's record a committed run made is
    on the topic, in a publication of a run from it to the member's next
    change, unless no publication of such a run was committed: a later
    change overtook it before anything could send it."""
    made = lost = over = 0
    lost_sample = []
    for m, changes in history.items():
        for i, (seq, rec) in enumerate(changes):
            if not rec[0]:
                continue  # only eligible members are published
            made += 1
            nxt = changes[i + 1][0] if i + 1 < len(changes) else float("inf")
            if any(seq <= p < nxt for p in sent.get(m, ())):
                continue
            if not any(seq <= p < nxt for p in publications):
                over += 1
            else:
                lost += 1
                if len(lost_sample) < 5:
                    lost_sample.append({"member": m, "seq": seq, "next_change": nxt})
    return {"changes_made": made, "changes_overtaken": over, "changes_lost": lost, "lost_sample": lost_sample}


def publications(s3, bucket, prefix, topic):
    """The state's ledger of publications to `topic`: {state_seq: [publication
    id]} of every intent, and the ids of those whose outcome says nothing of
    them is on the topic (aborted, or resolved after a crash with none
    found)."""
    by_seq, aborted = {}, set()
    folder = f"{prefix}/state/published/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
        for o in page.get("Contents", []):
            name = o["Key"].rsplit("/", 1)[-1]
            if not name[:12].isdigit():
                continue
            if name.endswith(".outcome.json"):
                continue
            if name.endswith(".json") and len(name) == 17:
                intent = json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
                if intent.get("topic") != topic:
                    continue
                by_seq.setdefault(intent["state_seq"], []).append(intent["publication_id"])
                try:
                    outcome = json.loads(s3.get_object(
                        Bucket=bucket, Key=o["Key"].removesuffix(".json") + ".outcome.json")["Body"].read())
                except s3.exceptions.NoSuchKey:
                    continue
                if outcome["outcome"] == "aborted" or (outcome["outcome"] == "resolved" and outcome["found"] == 0):
                    aborted.add(intent["publication_id"])
    return by_seq, aborted


def last_publication_stands(s3, bucket, prefix, topic):
    """Whether the newest publication to `topic` committed; None when none
    was made. One that aborted or is under way is made up by the next cycle."""
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/state/published/"):
        for o in page.get("Contents", []):
            name = o["Key"].rsplit("/", 1)[-1]
            if name[:12].isdigit() and name.endswith(".json") and len(name) == 17:
                intent = json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
                if intent.get("topic") == topic and (newest is None or intent["pseq"] > newest[0]):
                    newest = (intent["pseq"], o["Key"])
    if newest is None:
        return None
    try:
        outcome = json.loads(s3.get_object(Bucket=bucket, Key=newest[1].removesuffix(".json") + ".outcome.json")
                             ["Body"].read())
    except s3.exceptions.NoSuchKey:
        return False
    return outcome["outcome"] == "committed" or (outcome["outcome"] == "resolved" and outcome["found"] > 0)


def wait_settled(tap, fleet_last_ms, timeout, check, published, quiet=3):
    """Waits until `quiet` committed runs in a row, all past the last
    landing, changed no member, and the newest publication stands:
    whatever the last changes were, a publication has sent them. Returns
    whether it came to that."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        check()
        seqs = sorted(tap.entries)[-quiet:]
        # No publication at all stands only where no run changed a member.
        changed = any(e["counts"]["member_changes"] > 0 for e in tap.entries.values())
        if len(seqs) == quiet and all(tap.entries[s]["as_of_ms"] > fleet_last_ms
                                      and tap.entries[s]["counts"]["member_changes"] == 0 for s in seqs) \
                and (published() if changed else published() is not False):
            return True
        time.sleep(1)
    last = [(s, tap.entries[s]["as_of_ms"] > fleet_last_ms, tap.entries[s]["counts"]["member_changes"])
            for s in sorted(tap.entries)[-quiet:]]
    log(f"not settled within {timeout} s: the last runs (seq, past the last landing, member changes): {last}; "
        f"the newest publication stands: {published()}")
    return False
