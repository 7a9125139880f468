"""Reads the catalog tables pitwall registered (Glue on moto, through boto3)
and the lake's files with DuckDB under the declared schema: every declared
column is in the files with a type a reader of the declared Hive type gets,
every file column is declared, the partition folders fit the projection,
and the rows read under the declared types are all there.

    python3 lake_catalog_check.py DATABASE TABLE DLQ_TABLE LOCAL_LAKE DATASET

prints one JSON object."""

import json
import os
import re
import sys

import boto3
import duckdb

db, table, dlq_table, lake, dataset = sys.argv[1:6]
glue = boto3.client("glue", region_name=os.environ.get("AWS_REGION", "us-east-1"))

# What a Parquet or JSON value of each Hive type reads as in DuckDB.
DUCK = {"string": {"VARCHAR"}, "int": {"INTEGER"}, "bigint": {"BIGINT"},
        "double": {"DOUBLE"}, "boolean": {"BOOLEAN"},
        "timestamp": {"TIMESTAMP", "TIMESTAMP WITH TIME ZONE"}}
CAST = {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE",
        "boolean": "BOOLEAN", "timestamp": "TIMESTAMPTZ"}


def one(sql):
    return duckdb.sql(sql).fetchall()[0][0]


def declared(name):
    t = glue.get_table(DatabaseName=db, Name=name)["Table"]
    cols = [(c["Name"], c["Type"]) for c in t["StorageDescriptor"]["Columns"]]
    return cols, t["Parameters"], [k["Name"] for k in t["PartitionKeys"]]


out = {}
cols, params, keys = declared(table)
files = f"{lake}/{dataset}/dt=*/hour=*/*.parquet"
found = {r[0]: r[1] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{files}', hive_partitioning = false)").fetchall()}
out["type_mismatches"] = [f"{n}: declared {t}, file {found.get(n)}" for n, t in cols
                          if found.get(n) not in DUCK[t]]
out["undeclared_file_columns"] = sorted(set(found) - {n for n, _ in cols})
select = ", ".join(f'CAST("{n}" AS {CAST[t]})' for n, t in cols)
out["rows"] = one(f"SELECT count(*) FROM (SELECT {select} FROM read_parquet('{files}', hive_partitioning = true))")
parts = duckdb.sql(f"SELECT DISTINCT dt, hour FROM read_parquet('{files}', hive_partitioning = true)").fetchall()
out["partitions_fit_projection"] = all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(d)) and re.fullmatch(r"\d{2}", str(h)) for d, h in
                                       duckdb.sql(f"SELECT DISTINCT regexp_extract(filename, 'dt=([^/]+)', 1), regexp_extract(filename, 'hour=([^/]+)', 1) FROM read_parquet('{files}', filename = true)").fetchall())
out["partitions"] = len(parts)
out["partition_keys"] = keys
out["template"] = params.get("storage.location.template")

dcols, dparams, dkeys = declared(dlq_table)
struct = "{" + ", ".join(f"'{n}': '{CAST[t]}'" for n, t in dcols) + "}"
dlq_files = f"{lake}/_dlq/{dataset}/dt=*/*.jsonl"
out["dlq_rows"] = one(f"SELECT count(*) FROM read_json('{dlq_files}', format = 'newline_delimited', columns = {struct})")
keys_in_lines = set()
for (line,) in duckdb.sql(f"SELECT json FROM read_json_objects('{dlq_files}', format = 'newline_delimited')").fetchall():
    keys_in_lines |= set(json.loads(line))
out["dlq_undeclared_keys"] = sorted(keys_in_lines - {n for n, _ in dcols})
out["dlq_partition_keys"] = dkeys
print(json.dumps(out))
