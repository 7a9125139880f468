#!/usr/bin/env python3
"""Benchmark: `pitwall score publish` (Avro + Glue framing, idempotent,
acks=all, lz4) against a plain librdkafka producer (Python confluent-kafka)
sending the same number of same-sized payloads with the same settings, to
the same local broker, in the same run.

The run to publish is synthesised with DuckDB: N eligible members, each with
10 recent rentals, in the layout `pitwall score run` writes. The broker is
the one scripts/services.sh starts (tansu, no transactions, so both sides
publish without a transaction).

    eval "$(scripts/services.sh start)"
    python3 bench/publish_vs_librdkafka.py [--members 1000000]

Prints both rates and the ratio; exits 3 if pitwall reaches less than 80 %
of the plain producer's rate.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent


def synthesise_run(out, members):
    import duckdb
    out.mkdir(parents=True, exist_ok=True)
    c = duckdb.connect()
    c.execute(f"""
        COPY (
          SELECT printf('M%08d', i) AS member_id, true AS eligible, 'scored' AS status,
                 round(50 + (i % 500) / 10.0, 1) AS score, 'GOOD' AS grade, 10::BIGINT AS rentals_used,
                 [ {{'rental_id': printf('R%08d-%02d', i, k), 'end_at': TIMESTAMP '2026-10-01' + INTERVAL (k) HOUR,
                     'distance_km': 12.5 + k, 'score': 80.0 + k, 'grade': 'GOOD'}} FOR k IN range(10) ] AS recent_rentals,
                 12::BIGINT AS rentals_12m, 340.2 AS distance_km_total,
                 1.2 AS harsh_accel_per_100km, 1.6 AS harsh_brake_per_100km, 0.5 AS unstable_stop_per_100km,
                 2.1 AS speeding_pct, 0.1 AS excess_speeding_pct, 'psf-v1@1' AS model,
                 TIMESTAMP '2026-11-01' AS as_of
          FROM range({members}) t(i)
        ) TO '{out}/member_scores.parquet' (FORMAT parquet)""")
    (out / "run.json").write_text(json.dumps(
        {"run_id": f"bench-{members}", "status": "ok", "members": {"eligible": members}}))


def create_topic(brokers, topic):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": brokers})
    fs = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    for f in fs.values():
        try:
            f.result(30)
        except Exception as e:  # already exists is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise


def peer(brokers, topic, n, size):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all",
                  "compression.type": "lz4", "linger.ms": 20, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 200000})
    payload = os.urandom(size // 2) * 2 + os.urandom(size % 2)  # compressible like Avro, not trivially
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(err)

    t = time.perf_counter()
    for i in range(n):
        while True:
            try:
                p.produce(topic, key=b"M%08d" % i, value=payload, on_delivery=report)
                break
            except BufferError:
                p.poll(0.005)
        if i % 10000 == 0:
            p.poll(0)
    p.flush(120)
    elapsed = time.perf_counter() - t
    if failed:
        sys.exit(f"peer: {len(failed)} deliveries failed, first: {failed[0]}")
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--brokers", default=os.environ.get("PITWALL_TEST_KAFKA", "127.0.0.1:9092"))
    ap.add_argument("--pitwall", default=None)
    a = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", str(HERE.parent / "target"))
    pitwall = a.pitwall or os.path.join(target, "release", "pitwall")

    work = pathlib.Path(tempfile.mkdtemp(prefix="pitwall-bench-publish-"))
    run = work / "run"
    synthesise_run(run, a.members)
    stamp = int(time.time())
    t_pw, t_peer = f"bench-pitwall-{stamp}", f"bench-peer-{stamp}"
    create_topic(a.brokers, t_pw)
    create_topic(a.brokers, t_peer)

    t = time.perf_counter()
    out = subprocess.run([pitwall, "score", "publish", "--run", str(run), "--brokers", a.brokers, "--topic", t_pw,
                          "--registry", f"file:{work / 'registry'}", "--transactional=false",
                          "--kafka-timeout", "120s", "--json"], capture_output=True, text=True)
    pw_s = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"pitwall score publish failed:\n{out.stderr}")
    report = json.loads(out.stdout)
    size = report["bytes"] // report["records"]

    peer_s = peer(a.brokers, t_peer, a.members, size)
    pw_rate, peer_rate = a.members / pw_s, a.members / peer_s
    print(f"records            : {a.members:,} of ~{size} B (Avro + Glue framing)")
    print(f"pitwall publish    : {pw_s:6.2f} s  {pw_rate:10,.0f} rec/s  (whole command: read, encode, register, produce)")
    print(f"confluent-kafka    : {peer_s:6.2f} s  {peer_rate:10,.0f} rec/s  (pre-built payloads)")
    ratio = pw_rate / peer_rate
    print(f"ratio pitwall/peer : {ratio:.2f}  (goal >= 0.80: {'met' if ratio >= 0.8 else 'MISSED'})")
    sys.exit(0 if ratio >= 0.8 else 3)


if __name__ == "__main__":
    main()
