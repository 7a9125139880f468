"""Stream administration for the ingestion tests, through boto3.

    kinesis_admin.py create STREAM SHARDS
    kinesis_admin.py split STREAM SHARD_ID        (at the middle of its hash range)
    kinesis_admin.py merge STREAM SHARD_ID ADJACENT_SHARD_ID
    kinesis_admin.py shards STREAM                (JSON: open shard ids)
"""
import json
import os
import sys
import time

import boto3

k = boto3.client("kinesis", region_name=os.environ.get("AWS_REGION", "us-east-1"))
cmd, stream = sys.argv[1], sys.argv[2]


def wait_active():
    for _ in range(100):
        if k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    sys.exit(f"{stream} did not become ACTIVE")


def shards():
    return k.list_shards(StreamName=stream)["Shards"]


if cmd == "create":
    k.create_stream(StreamName=stream, ShardCount=int(sys.argv[3]))
    wait_active()
elif cmd == "split":
    s = next(s for s in shards() if s["ShardId"] == sys.argv[3])
    lo, hi = int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])
    k.split_shard(StreamName=stream, ShardToSplit=sys.argv[3], NewStartingHashKey=str((lo + hi) // 2))
    wait_active()
elif cmd == "merge":
    k.merge_shards(StreamName=stream, ShardToMerge=sys.argv[3], AdjacentShardToMerge=sys.argv[4])
    wait_active()
elif cmd == "shards":
    print(json.dumps([s["ShardId"] for s in shards() if "EndingSequenceNumber" not in s["SequenceNumberRange"]]))
else:
    sys.exit(f"unknown command {cmd}")
