"""Puts server-log events on a Kinesis stream the ways producers do, with
clients that are not pitwall's: boto3 PutRecords, AWS's KPL-compatible
aggregator (aws-kinesis-agg) and CloudWatch Logs subscription payloads.

    kinesis_put.py STREAM FIRST COUNT [--bad]

Events FIRST..FIRST+COUNT get ids 00000000-0000-4000-8000-<n:012>; every
11th breaks the contract (status 999). Records rotate through: one JSON
object, three newline-separated objects, a KPL aggregate of four user
records (one of them two lines), a gzip CloudWatch DATA_MESSAGE of three log
events. With --bad, one record of each undecodable kind is added too (not
UTF-8, not JSON, a KPL aggregate with a broken MD5, broken gzip, an empty
record) plus a CloudWatch CONTROL_MESSAGE.

Prints JSON: {"good": [ids], "bad_events": n, "bad_records": n, "control": n}.
"""
import gzip
import json
import os
import sys

import boto3
from aws_kinesis_agg.aggregator import RecordAggregator

stream, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bad_kinds = "--bad" in sys.argv
k = boto3.client("kinesis", region_name=os.environ.get("AWS_REGION", "us-east-1"))


def event(n):
    return json.dumps({
        "event_id": "00000000-0000-4000-8000-%012d" % n,
        "ts": "2026-11-01T%02d:%02d:%02d.%03dZ" % (8 + n % 3, n % 60, (n * 7) % 60, n % 1000),
        "service": "rentals", "env": "prod", "level": "INFO", "method": "GET",
        "path": "/v1/cars/%d" % n, "status": 999 if n % 11 == 0 else 200, "latency_ms": n % 500 / 10,
        "client_ip": "198.51.100.%d" % (n % 256), "phone": "+4915100%05d" % n, "note": "extra",
    })


out = {"good": [], "bad_events": 0, "bad_records": 0, "control": 0}
ids = list(range(first, first + count))
records = []  # (data, partition key)
shape = 0
while ids:
    shape += 1
    if shape % 4 == 1:
        take, data = ids[:1], event(ids[0]).encode()
    elif shape % 4 == 2:
        take = ids[:3]
        data = "\n".join(event(n) for n in take).encode() + b"\n"
    elif shape % 4 == 3:
        take = ids[:5]
        agg = RecordAggregator()
        # Four user records: the first three one event each, the last two lines.
        parts = [event(take[0]), event(take[1]), event(take[2]), "\n".join(event(n) for n in take[3:5])] if len(take) == 5 else [event(n) for n in take]
        for p in parts:
            agg.add_user_record("pk-%d" % take[0], p.encode())
        data = agg.clear_and_get().get_contents()[2]
    else:
        take = ids[:3]
        payload = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/ecs/api",
                   "logStream": "api-1", "subscriptionFilters": ["to-kinesis"],
                   "logEvents": [{"id": str(n), "timestamp": 1793523600000 + n, "message": event(n)} for n in take]}
        data = gzip.compress(json.dumps(payload).encode())
    ids = ids[len(take):]
    for n in take:
        if n % 11 == 0:
            out["bad_events"] += 1
        else:
            out["good"].append("00000000-0000-4000-8000-%012d" % n)
    records.append((data, "pk-%d" % take[0]))

if bad_kinds:
    agg = RecordAggregator()
    agg.add_user_record("pk", event(0).encode())
    broken = bytearray(agg.clear_and_get().get_contents()[2])
    broken[-1] ^= 0xFF
    for data in [b"\xff\xfe not utf-8", b"{not json", bytes(broken), b"\x1f\x8b\x08\x00broken", b"  \n"]:
        records.append((data, "bad"))
        out["bad_records"] += 1
    control = {"messageType": "CONTROL_MESSAGE", "logEvents": [{"id": "", "timestamp": 0, "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}
    records.append((gzip.compress(json.dumps(control).encode()), "control"))
    out["control"] += 1

for i in range(0, len(records), 100):
    batch = [{"Data": d, "PartitionKey": pk} for d, pk in records[i:i + 100]]
    res = k.put_records(StreamName=stream, Records=batch)
    if res.get("FailedRecordCount"):
        sys.exit(f"{res['FailedRecordCount']} records failed: {res['Records']}")
print(json.dumps(out))
