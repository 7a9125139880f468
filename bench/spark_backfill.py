#!/usr/bin/env python3
"""Benchmark: a backfill scored three ways on the same fleet, in one run.

  1. `pitwall score run` (the binary, 2 threads),
  2. `pitwall.spark` in Spark local[2] (pitwall's engine in the Python workers),
  3. the spec in plain Spark SQL, local[2] (bench/score_spark.sql: window
     functions over the samples, the way a team writes it without pitwall).

Goal: pitwall.spark <= 0.25 x Spark SQL's time. Also printed: pitwall.spark
against the binary (the price of Spark on one box) and where its time goes,
from two cut-down jobs on the same data: read + shuffle by car (no Python),
and read + shuffle + the Arrow hand-over to Python workers (no scoring);
and, from these figures, the cluster that rescores a year of a 20,000-car
fleet (80 B samples) in an hour. Each side is a process of its own, timed
whole (JVM start included) and by its job alone.

    ~/.cache/pitwall/tools/python/bin/python bench/spark_backfill.py          # ~100 M samples
    ... bench/spark_backfill.py --rentals 600 --no-breakdown                  # a quick look

Needs the package installed in the interpreter that runs this (maturin
develop --release, see docs/python.md). Exit status: 1 when the outputs
disagree, 3 when the goal is missed, 0 otherwise.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
AS_OF = "2026-11-01T00:00:00Z"
AS_OF_MS = 1793491200000
GRACE_MS = 4 * 3600 * 1000
YEAR_OF_FLEET = 80e9  # samples: 20,000 cars, a year, 1 Hz while driving


def session(app):
    from pyspark.sql import SparkSession
    os.environ["PYSPARK_PYTHON"] = sys.executable
    s = (SparkSession.builder.master("local[2]").appName(app)
         .config("spark.driver.memory", "8g")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.session.timeZone", "UTC")
         .getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    return s


def side_pitwall_spark(spark, fleet, out):
    import pitwall.spark as pws
    pws.run(spark, str(fleet / "rentals.parquet"), str(fleet / "telemetry"), as_of=AS_OF, out=str(out))


def side_spark_sql(spark, fleet, out):
    spark.read.parquet(str(fleet / "rentals.parquet")).createOrReplaceTempView("rentals_in")
    spark.read.option("recursiveFileLookup", True).parquet(str(fleet / "telemetry")) \
        .createOrReplaceTempView("telemetry_in")
    sql = (HERE / "score_spark.sql").read_text().replace("{as_of_ms}", str(AS_OF_MS)) \
        .replace("{grace_ms}", str(GRACE_MS))
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    for statement in filter(str.strip, body.split(";")):
        spark.sql(statement)
    spark.table("rental_scores").write.mode("overwrite").parquet(str(out / "rental_scores.parquet"))
    spark.table("member_scores").write.mode("overwrite").parquet(str(out / "member_scores.parquet"))


def _by_car(spark, fleet):
    import pitwall.spark as pws
    rentals = pws.read_rentals(spark, str(fleet / "rentals.parquet"))
    return pws.by_car(rentals, pws.read_telemetry(spark, str(fleet / "telemetry")))


def side_shuffle(spark, fleet, out):
    """pitwall.spark's telemetry pass without Python: reading, and every
    car's samples and rentals shuffled into one partition."""
    _by_car(spark, fleet).write.format("noop").mode("overwrite").save()


def side_transfer(spark, fleet, out):
    """The same, and every partition handed to a Python worker as Arrow, unscored."""
    import pyarrow as pa
    import pitwall.spark as pws
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(pws.ARROW_BATCH_ROWS))

    def count(batches):
        n = sum(b.num_rows for b in batches)
        yield pa.RecordBatch.from_pydict({"n": pa.array([n], pa.int64())})
    _by_car(spark, fleet).mapInArrow(count, "n long").write.format("noop").mode("overwrite").save()


SIDES = {"pitwall-spark": side_pitwall_spark, "spark-sql": side_spark_sql,
         "shuffle": side_shuffle, "transfer": side_transfer}


def run_side(name, fleet, out):
    """In a child process: one side's job, its time printed as JSON."""
    spark = session(f"bench-{name}")
    t = time.perf_counter()
    SIDES[name](spark, fleet, out)
    print(json.dumps({"job_s": time.perf_counter() - t}))
    spark.stop()


def measured(cmd, env=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if p.returncode not in (0, 3):
        sys.exit(f"{' '.join(cmd[:3])} ... failed with exit code {p.returncode}")
    return time.perf_counter() - t, p.stdout


def spark_side(name, fleet, out):
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    whole, stdout = measured([sys.executable, __file__, "--side", name, "--fleet", str(fleet), "--out", str(out)])
    job = json.loads(stdout.strip().splitlines()[-1])["job_s"]
    return whole, job


def disagreements(binary, spark_out, sql_out):
    import pyarrow.parquet as pq
    pw = pq.read_table(binary / "rental_scores.parquet").to_pandas().set_index("rental_id").sort_index()
    ps = pq.read_table(spark_out / "rental_scores.parquet").to_pandas().set_index("rental_id").sort_index()
    sq = pq.read_table(sql_out / "rental_scores.parquet").to_pandas().set_index("rental_id").sort_index()
    cols = ["status", "samples", "moving_s", "speeding_s", "harsh_accel_n", "harsh_brake_n", "unstable_stop_n"]
    spark_same = len(pw) == len(ps) and pw.equals(ps[pw.columns].astype(pw.dtypes.to_dict()))
    sql_rows = pw.join(sq.add_suffix("_sql"), how="outer")
    feature = sum((sql_rows[c] != sql_rows[c + "_sql"]).sum() for c in cols)
    score = ((sql_rows["score"] - sql_rows["score_sql"]).abs() > 0.1 + 1e-9).sum()
    return {"pitwall_spark_equals_binary": bool(spark_same), "spark_sql_rentals": len(sq),
            "spark_sql_feature_or_status_diff": int(feature), "spark_sql_score_diff_over_0.1": int(score)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rentals", type=int, default=13500, help="fleet size; 13500 gives ~100 M samples")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", default="/tmp/pitwall-bench-spark")
    ap.add_argument("--pitwall", default=None, help="pitwall binary (default: release build in CARGO_TARGET_DIR)")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the two cut-down jobs")
    ap.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    ap.add_argument("--fleet", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        return run_side(a.side, pathlib.Path(a.fleet), pathlib.Path(a.out))

    target = os.environ.get("CARGO_TARGET_DIR", str(HERE.parent / "target"))
    pitwall = a.pitwall or os.path.join(target, "release", "pitwall")
    work = pathlib.Path(a.work)
    fleet = work / f"fleet-{a.rentals}-{a.seed}"
    if not (fleet / "rentals.parquet").exists():
        subprocess.run([pitwall, "gen", "fleet", "--out", str(fleet), "--rentals", str(a.rentals),
                        "--seed", str(a.seed)], check=True)
    for f in fleet.rglob("*.parquet"):
        f.read_bytes()  # the page cache warm for every side alike

    binary_out = work / "binary"
    shutil.rmtree(binary_out, ignore_errors=True)
    bin_s, _ = measured([pitwall, "score", "run", "--rentals", str(fleet / "rentals.parquet"),
                         "--telemetry", str(fleet / "telemetry"), "--as-of", AS_OF,
                         "--out", str(binary_out), "--threads", "2"], env={**os.environ, "PITWALL_LOG": "warn"})
    run = json.loads((binary_out / "run.json").read_text())
    samples = run["inputs"]["telemetry"]["rows"]

    pws_whole, pws_job = spark_side("pitwall-spark", fleet, work / "pitwall-spark")
    sql_whole, sql_job = spark_side("spark-sql", fleet, work / "spark-sql")
    breakdown = {}
    if not a.no_breakdown:
        for name in ("shuffle", "transfer"):
            breakdown[name] = spark_side(name, fleet, work / name)[1]

    agree = disagreements(binary_out, work / "pitwall-spark", work / "spark-sql")
    ratio = pws_job / sql_job
    print(f"telemetry rows          : {samples:,}")
    print(f"pitwall score run       : {bin_s:8.1f} s (whole process, 2 threads)")
    print(f"pitwall.spark local[2]  : {pws_job:8.1f} s job, {pws_whole:7.1f} s whole process")
    print(f"Spark SQL local[2]      : {sql_job:8.1f} s job, {sql_whole:7.1f} s whole process")
    print(f"ratio pitwall.spark/Spark SQL (jobs): {ratio:.3f}   (whole processes: {pws_whole / sql_whole:.3f})")
    print(f"price of Spark on one box: pitwall.spark job / binary = {pws_job / bin_s:.1f}x")
    if breakdown:
        shuffle, transfer = breakdown["shuffle"], breakdown["transfer"]
        print("where pitwall.spark's time goes (job seconds):")
        print(f"  read + shuffle by car (no Python)          : {shuffle:7.1f}")
        print(f"  + Arrow hand-over to Python workers        : {transfer - shuffle:7.1f}")
        print(f"  + scoring, rentals and members, writing    : {pws_job - transfer:7.1f}")
    per_core = samples / pws_job / 2
    cores = YEAR_OF_FLEET / (per_core * 3600)
    print(f"on paper: {per_core / 1e6:.2f} M samples/s per core -> a year of 20,000 cars (80 B samples) "
          f"in an hour takes ~{cores:.0f} cores (~{cores / 16:.0f} executors of 16 vCPU), "
          "if the job scales out linearly and S3 reads keep up")
    print("agreement: " + json.dumps(agree))
    if not agree["pitwall_spark_equals_binary"] or agree["spark_sql_feature_or_status_diff"] \
            or agree["spark_sql_score_diff_over_0.1"]:
        print("FAIL: the outputs disagree")
        sys.exit(1)
    met = ratio <= 0.25
    print(f"goal (pitwall.spark <= 0.25 x Spark SQL): {'met' if met else 'MISSED'}")
    sys.exit(0 if met else 3)


if __name__ == "__main__":
    main()
