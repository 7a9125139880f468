"""A fleet scored on Spark with pitwall's engine: for the backfill or full
rescore that outgrows one machine.

Spark does what it is good at, moving rows: telemetry is partitioned by
car together with that car's rentals, and each partition is scored by the
same engine as ``pitwall score run``, inside the Python worker, on the
Arrow batches Spark hands it. No score is computed
by Spark SQL, so the numbers are the binary's.

    from pitwall import spark as pws
    run = pws.run(spark, "s3://lake/rentals/", "s3://lake/telemetry/",
                  as_of="2026-11-01T00:00:00Z", out="s3://lake/rescore/2026-11-01/")

writes ``rental_scores.parquet``, ``member_scores.parquet``,
``rejected_rentals.parquet``, ``rejected_telemetry.parquet`` (folders of
part files, in the binary's columns) and ``run.json``.

Three passes, each a shuffle into partitions scored whole by one engine
call (``mapInArrow``): rentals partitioned by rental_id (a rental's copies
meet, as the binary resolves them), telemetry with its cars' rentals by
car, and rental results by member. No sort by Spark: the engine sorts
each car's samples itself. A partition must fit one Python worker's
memory (``partitions=`` sets how many there are).
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import re
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

import pitwall
from pitwall import _engine

__all__ = ["score_fleet", "run", "read_rentals", "read_telemetry", "by_car", "SparkScores", "main"]

RENTAL_COLUMNS = ["rental_id", "member_id", "car_id", "start_at", "end_at"]
TELEMETRY_COLUMNS = ["car_id", "ts", "speed_kmh", "speed_limit_kmh"]
# Where a row came from, when the DataFrame was read from files (read_*):
# rejected rows then name their file and row as the binary's do.
# The file is its path's xxhash64: the path itself would ride every row
# through the shuffle.
FILE, ROW = "_pitwall_file", "_pitwall_row"
# In the telemetry pass, a rental of the car: as JSON text, null on samples.
RENTAL = "_pitwall_rental"
KIND = "_pitwall_kind"
REJECT = "reject_"
ARROW_BATCH_ROWS = 1 << 18
COUNTS = ["telemetry_rows", "telemetry_valid", "samples_in_rentals",
          "samples_outside_rentals", "duplicate_samples"]


class SparkScores:
    """The outputs of a Spark scoring, as DataFrames, and its counts."""

    def __init__(self, rental_scores, member_scores, rejected_rentals, rejected_telemetry, counts):
        self.rental_scores = rental_scores
        self.member_scores = member_scores
        self.rejected_rentals = rejected_rentals
        self.rejected_telemetry = rejected_telemetry
        self.counts = counts


# -- schemas: asked of the engine, so they cannot drift from the binary's --

def _empty(names_types):
    return pa.table({n: pa.array([], t) for n, t in names_types})


_TS = pa.timestamp("ms", "UTC")


@functools.lru_cache(maxsize=None)
def _engine_schemas():
    rentals = _empty([("rental_id", pa.string()), ("member_id", pa.string()), ("car_id", pa.string()),
                      ("start_at", _TS), ("end_at", _TS)])
    telemetry = _empty([("car_id", pa.string()), ("ts", _TS), ("speed_kmh", pa.float64()),
                        ("speed_limit_kmh", pa.float64())])
    model = pitwall.Model.default()
    out = _engine.score(rentals, telemetry, 0, model, None, False)
    members = _engine.member_scores(out["rental_scores"], 0, model)
    valid, _ = _engine.check_rentals(rentals)
    return {"rental_scores": out["rental_scores"].schema, "member_scores": members.schema,
            "rejected_rentals": out["rejected_rentals"].schema,
            "rejected_telemetry": out["rejected_telemetry"].schema, "rentals": valid.schema}


def _for_spark(t: pa.DataType) -> pa.DataType:
    """What Spark's Arrow exchange carries: µs timestamps, signed integers, nested alike."""
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", "UTC")
    if pa.types.is_unsigned_integer(t):
        return pa.int64()
    if pa.types.is_list(t):
        return pa.list_(pa.field("element", _for_spark(t.value_type), True))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _for_spark(f.type), f.nullable) for f in t])
    return t


def _spark_schema(fields):
    """An Arrow schema for Spark, every field nullable (Spark's own rule for UDF output)."""
    return pa.schema([pa.field(f.name, _for_spark(f.type), True) for f in fields])


def _spark_type(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema
    return from_arrow_schema(schema)


def _fit(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns (absent ones null) and types."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _prefixed(schema: pa.Schema, prefix: str):
    return [pa.field(prefix + f.name, f.type, True) for f in schema]


@functools.lru_cache(maxsize=None)
def _transport(stage: str) -> pa.Schema:
    """The one schema a pass's groups return: its outputs side by side, a
    row being one of them (KIND says which)."""
    s = _engine_schemas()
    kind = [pa.field(KIND, pa.string())]
    if stage == "rentals":
        fields = kind + list(s["rentals"]) + _prefixed(s["rejected_rentals"], REJECT)
    else:
        fields = (kind + list(s["rental_scores"]) + _prefixed(s["rejected_telemetry"], REJECT)
                  + [pa.field(c, pa.int64()) for c in COUNTS])
    return _spark_schema(fields)


@functools.lru_cache(maxsize=8)
def _model(text: str) -> pitwall.Model:
    return pitwall.Model.from_toml(text)


# -- the partition functions: they run in Spark's Python workers --

def _collect(batches) -> Optional[pa.Table]:
    """A partition as one table: a group (a rental's copies, a car's
    samples and rentals, a member's results) is never cut in two."""
    batches = list(batches)
    return pa.Table.from_batches(batches) if batches else None


def _origin(part: pa.Table, rejected: pa.Table) -> pa.Table:
    """Rejected rows named by their file (its hash, until the driver names
    it) and row there, when the partition carries them, instead of their
    place in the partition."""
    at = rejected.column("row").cast(pa.int64())
    if FILE in part.column_names:
        files = part.column(FILE).take(at).cast(pa.string())
        rows = part.column(ROW).take(at).cast(pa.int64())
    else:
        files = pa.nulls(rejected.num_rows, pa.string())
        rows = pa.nulls(rejected.num_rows, pa.int64())
    t = rejected.set_column(rejected.schema.get_field_index("file"), "file", files)
    return t.set_column(t.schema.get_field_index("row"), "row", rows)


def _as_rejects(rejected: pa.Table) -> pa.Table:
    return rejected.rename_columns([REJECT + n for n in rejected.column_names])


def _with_kind(t: pa.Table, kind: str) -> pa.Table:
    return t.append_column(KIND, pa.array([kind] * t.num_rows, pa.string()))


def _check_rentals_partition(batches):
    part = _collect(batches)
    if part is None:
        return
    if FILE in part.column_names:
        # The binary keeps the first of identical copies in file and row order.
        part = part.sort_by([(FILE, "ascending"), (ROW, "ascending")])
    valid, rejected = _engine.check_rentals(part)
    schema = _transport("rentals")
    yield from _fit(_with_kind(valid, "valid"), schema).to_batches()
    yield from _fit(_with_kind(_as_rejects(_origin(part, rejected)), "reject"), schema).to_batches()


def _rentals_of(texts) -> pa.Table:
    rows = [json.loads(t) for t in texts]
    ms = pa.timestamp("ms", "UTC")
    return pa.table({c: pa.array([r[c] for r in rows], ms if c in ("start_at", "end_at") else pa.string())
                     for c in RENTAL_COLUMNS})


def _score_partition(model_text: str, as_of: int, grace_ms: Optional[int]):
    def score(batches):
        part = _collect(batches)
        if part is None:
            return
        is_rental = pc.is_valid(part.column(RENTAL))
        rentals = _rentals_of(part.filter(is_rental).column(RENTAL).to_pylist())
        telemetry = part.filter(pc.invert(is_rental)).drop_columns([RENTAL])
        out = _engine.score(rentals, telemetry, as_of, _model(model_text), grace_ms, False)
        schema = _transport("telemetry")
        counts = pa.table({c: [out["counts"][c]] for c in COUNTS})
        yield from _fit(_with_kind(out["rental_scores"], "score"), schema).to_batches()
        rejected = _as_rejects(_origin(telemetry, out["rejected_telemetry"]))
        yield from _fit(_with_kind(rejected, "reject"), schema).to_batches()
        yield from _fit(_with_kind(counts, "counts"), schema).to_batches()
    return score


def _score_members_partition(model_text: str, as_of: int):
    def members(batches):
        results = _collect(batches)
        if results is None:
            return
        out = _engine.member_scores(results, as_of, _model(model_text))
        yield from _fit(out, _spark_schema(out.schema)).to_batches()
    return members


# -- the driver side --

def _refuse_bad_schema(df, what: str, columns):
    """A missing column or a type the contract refuses stops the job before
    it starts, with the binary's words (the engine checks an empty batch of
    the DataFrame's schema), never inside a task."""
    from pyspark.sql.pandas.types import to_arrow_schema
    fields = [f for f in df.schema.fields if f.name in columns]
    empty = to_arrow_schema(type(df.schema)(fields)).empty_table()
    if what == "rentals":
        _engine.check_rentals(empty)
    else:
        _engine.check_telemetry(empty)


def _partitions(df, bytes_each: int, asked: Optional[int] = None) -> int:
    """How many partitions a pass over `df` has: each is handed to one
    worker call, so it is kept to about `bytes_each` of input (Spark's
    estimate of the files' size), with at least one per core. A worker
    call costs tens of milliseconds whatever it holds: a small input gets
    few partitions."""
    if asked:
        return asked
    spark = df.sparkSession
    size = int(str(df._jdf.queryExecution().optimizedPlan().stats().sizeInBytes()))
    if size >= 1 << 62:
        # No estimate (a DataFrame not read from files): Spark's own default.
        return int(spark.conf.get("spark.sql.shuffle.partitions"))
    cores = spark.sparkContext.defaultParallelism
    return max(cores, min(-(-size // bytes_each), 100_000))


def score_fleet(rentals, telemetry, as_of: pitwall.Time, model: Optional[pitwall.Model] = None,
                grace: Optional[_dt.timedelta] = None, partitions: Optional[int] = None) -> SparkScores:
    """Scores a fleet held in Spark DataFrames; returns DataFrames in the
    columns of ``score run``'s Parquet outputs (timestamps as Spark's).

    ``partitions`` sets how many pieces the telemetry is scored in (by
    default one per ~16 MB of input, at least one per core); each must fit
    a Python worker's memory. The counts are
    computed here (one Spark job); the DataFrames are cached, so writing
    them does not score the fleet again."""
    from pyspark.sql import functions as F

    _refuse_bad_schema(rentals, "rentals", RENTAL_COLUMNS)
    _refuse_bad_schema(telemetry, "telemetry", TELEMETRY_COLUMNS)
    spark = telemetry.sparkSession
    # Spark hands a partition to Python in batches of this many rows; the
    # default (10,000) makes the hand-over of a car's samples a few hundred batches.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
    model = model or pitwall.Model.default()
    text, as_of = model.to_toml(), pitwall.as_of_ms(as_of)
    grace_ms = None if grace is None else grace // _dt.timedelta(milliseconds=1)
    s = _engine_schemas()

    keep = [c for c in rentals.columns if c in RENTAL_COLUMNS + [FILE, ROW]]
    small = _partitions(rentals, 32 << 20)
    checked = (rentals.select(*keep).repartition(small, "rental_id")
               .mapInArrow(_check_rentals_partition, _spark_type(_transport("rentals"))).persist())
    valid = checked.where(F.col(KIND) == "valid").select(*s["rentals"].names)
    rejected_rentals = _named(rentals, _unprefixed(checked.where(F.col(KIND) == "reject"), s["rejected_rentals"]))

    scored = (by_car(valid, telemetry, partitions)
              .mapInArrow(_score_partition(text, as_of, grace_ms), _spark_type(_transport("telemetry")))
              .persist())
    rental_scores = scored.where(F.col(KIND) == "score").select(*s["rental_scores"].names)
    rejected_telemetry = _named(telemetry,
                                _unprefixed(scored.where(F.col(KIND) == "reject"), s["rejected_telemetry"]))
    counts = scored.where(F.col(KIND) == "counts").agg(*[F.sum(c).alias(c) for c in COUNTS]).first()

    member_scores = (rental_scores.repartition(small, "member_id")
                     .mapInArrow(_score_members_partition(text, as_of),
                                 _spark_type(_spark_schema(s["member_scores"]))).persist())
    return SparkScores(rental_scores, member_scores, rejected_rentals, rejected_telemetry,
                       {c: int(counts[c] or 0) for c in COUNTS})


def by_car(rentals, telemetry, partitions: Optional[int] = None):
    """The telemetry pass's input: every sample and every rental of a car
    in one partition, unsorted. A rental rides as JSON text in one column
    (``_pitwall_rental``), null on samples. ``bench/spark_backfill.py``
    times this shuffle alone."""
    from pyspark.sql import functions as F
    keep = [c for c in telemetry.columns if c in TELEMETRY_COLUMNS + [FILE, ROW]]
    # One column, null on samples: a struct would cost Spark a null per
    # field on every sample when it hands the partition to Python.
    rental = F.to_json(F.struct("rental_id", "member_id", "car_id", F.unix_millis("start_at").alias("start_at"),
                                F.unix_millis("end_at").alias("end_at")))
    cars = rentals.select("car_id", rental.alias(RENTAL))
    both = telemetry.select(*keep).unionByName(cars, allowMissingColumns=True)
    return both.repartition(_partitions(telemetry, 16 << 20, partitions), "car_id")


def _named(source, rejected):
    """Rejected rows with their file's name for its hash: the names come
    from the files Spark read, not from every row."""
    from pyspark.sql import functions as F
    if FILE not in source.columns:
        return rejected
    spark = source.sparkSession
    paths = source.inputFiles()
    # Spark names a local file file:///p in the listing and file:/p per row.
    forms = sorted({f for p in paths for f in (p, re.sub("^file:///", "file:/", p))})
    names = (spark.createDataFrame([(f,) for f in forms], "path string")
             .select(F.xxhash64("path").cast("string").alias("hash"),
                     F.regexp_replace("path", "^file:(//)?", "").alias("name")).distinct())
    joined = rejected.join(F.broadcast(names), rejected["file"] == names["hash"], "left")
    cols = [F.coalesce(names["name"], rejected["file"]).alias("file") if c == "file" else rejected[c]
            for c in rejected.columns]
    return joined.select(*cols)


def _unprefixed(df, schema: pa.Schema):
    from pyspark.sql import functions as F
    return df.select(*[F.col(REJECT + n).alias(n) for n in schema.names])


def _read(spark, path: str):
    from pyspark.sql import functions as F
    reader = spark.read
    if path.endswith(".csv"):
        df = reader.option("header", True).csv(path)
    else:
        df = reader.option("recursiveFileLookup", True).parquet(path)
    return df.select("*", F.xxhash64("_metadata.file_path").alias(FILE), F.col("_metadata.row_index").alias(ROW))


def read_rentals(spark, path: str):
    """Rentals from Parquet (a file or folder) or a CSV file, each row
    knowing its file and row so that rejects name them."""
    return _read(spark, path)


def read_telemetry(spark, path: str):
    """Telemetry from a folder of Parquet files (hive ``dt=`` folders read
    as folders), each row knowing its file and row."""
    return _read(spark, path)


def run(spark, rentals: str, telemetry: str, as_of: pitwall.Time, out: str,
        model: Optional[pitwall.Model] = None, grace: Optional[_dt.timedelta] = None,
        partitions: Optional[int] = None) -> dict:
    """``pitwall score run`` on Spark: reads, scores, writes the outputs
    under ``out`` (each a folder of Parquet parts, sorted as the binary
    sorts its files) and returns what run.json holds."""
    model = model or pitwall.Model.default()
    scores = score_fleet(read_rentals(spark, rentals), read_telemetry(spark, telemetry),
                         as_of, model, grace, partitions)
    base = out.rstrip("/")
    # Millisecond timestamps, as the binary writes them.
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MILLIS")
    outputs = {}
    for name, df, keys in [("rental_scores", scores.rental_scores, ["rental_id"]),
                           ("member_scores", scores.member_scores, ["member_id"]),
                           ("rejected_rentals", scores.rejected_rentals, ["file", "row"]),
                           ("rejected_telemetry", scores.rejected_telemetry, ["file", "row"])]:
        path = f"{base}/{name}.parquet"
        df.orderBy(*keys).write.mode("overwrite").parquet(path)
        outputs[name] = path
    run = _run_json(scores, model, pitwall.as_of_ms(as_of), rentals, telemetry, outputs)
    _write_text(spark, f"{base}/run.json", json.dumps(run, indent=2))
    return run


def _by(df, column: str) -> dict:
    return {r[0]: r[1] for r in df.groupBy(column).count().orderBy(column).collect()}


def _run_json(scores: SparkScores, model, as_of: int, rentals: str, telemetry: str, outputs) -> dict:
    from pyspark.sql import functions as F
    rejected_r, rejected_t = _by(scores.rejected_rentals, "rule"), _by(scores.rejected_telemetry, "rule")
    members = scores.member_scores.agg(F.count("*"), F.sum(F.col("eligible").cast("long"))).first()
    by_status = _by(scores.rental_scores, "status")
    c = scores.counts
    return {
        "engine": "pitwall.spark",
        "pitwall_version": pitwall.__version__,
        "as_of": _dt.datetime.fromtimestamp(as_of / 1000, _dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        "model": {"id": model.id},
        "inputs": {
            "rentals": {"location": rentals, "rejected": sum(rejected_r.values())},
            "telemetry": {"location": telemetry, "rows": c["telemetry_rows"], "valid": c["telemetry_valid"],
                          "rejected": sum(rejected_t.values())},
            "telemetry_in_rentals": c["samples_in_rentals"],
            "telemetry_outside_rentals": c["samples_outside_rentals"],
            "telemetry_duplicates": c["duplicate_samples"],
        },
        "rejected": {"rentals": rejected_r, "telemetry": rejected_t},
        "rentals": {"considered": sum(by_status.values()), "by_status": by_status},
        "members": {"total": members[0], "eligible": int(members[1] or 0),
                    "by_status": _by(scores.member_scores, "status")},
        "outputs": outputs,
    }


def _write_text(spark, path: str, text: str):
    """A small file through Hadoop's file system, so s3:// and hdfs:// work as local paths do."""
    jvm = spark._jvm
    p = jvm.org.apache.hadoop.fs.Path(path)
    fs = p.getFileSystem(spark._jsc.hadoopConfiguration())
    stream = fs.create(p, True)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()


def main(argv=None) -> int:
    """``spark-submit`` entry point: the backfill as a job (docs/python.md)."""
    import argparse
    ap = argparse.ArgumentParser(prog="pitwall.spark", description="pitwall score run on Spark: "
                                 "rental and member scores, rejects and run.json under --out.")
    ap.add_argument("--rentals", required=True, help="rentals: Parquet file or folder, or a CSV file")
    ap.add_argument("--telemetry", required=True, help="telemetry: a folder of Parquet files")
    ap.add_argument("--as-of", required=True, help="the run's now, RFC 3339")
    ap.add_argument("--out", required=True, help="output folder (local, s3://, hdfs://)")
    ap.add_argument("--model", help="a model file (default: the embedded model)")
    ap.add_argument("--partitions", type=int, help="pieces the telemetry is scored in")
    a = ap.parse_args(argv)
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.appName("pitwall-backfill").getOrCreate()
    model = pitwall.Model.load(a.model) if a.model else None
    done = run(spark, a.rentals, a.telemetry, a.as_of, a.out, model=model, partitions=a.partitions)
    print(json.dumps({k: done[k] for k in ("as_of", "model", "rentals", "members", "outputs")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
