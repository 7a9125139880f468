"""pitwall.spark in local mode against the binary, on the same fleet as
test_engine.py: a fleet with redelivered files (duplicated samples),
late telemetry (pending rentals) and contract-breaking rows."""
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pitwall
import pitwall.spark
from conftest import AS_OF, pitwall_bin

pyspark = pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession
    # Workers run this interpreter, which has the package installed.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    s = (SparkSession.builder.master("local[2]").appName("pitwall-tests")
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.shuffle.partitions", "8")
         # Files split in several partitions: a car's rows meet only through the shuffle.
         .config("spark.sql.files.maxPartitionBytes", str(256 * 1024))
         .config("spark.sql.session.timeZone", "UTC")
         .getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def spark_run(spark, fleet, tmp_path_factory):
    """The job as spark-submit runs it (pitwall.spark's main), in this session."""
    out = tmp_path_factory.mktemp("spark") / "out"
    code = pitwall.spark.main(["--rentals", str(fleet.dir / "rentals.parquet"), "--telemetry",
                               str(fleet.dir / "telemetry"), "--as-of", AS_OF, "--out", str(out)])
    assert code == 0
    return out, json.loads((out / "run.json").read_text())


def read(out, name):
    return pq.read_table(out / f"{name}.parquet")


def same_values(mine: pa.Table, theirs: pa.Table, keys):
    """Equal row for row once both are sorted by `keys`, Spark's types cast to the binary's."""
    assert mine.column_names == theirs.column_names
    mine = mine.cast(pa.schema([f.with_nullable(True) for f in theirs.schema]))
    theirs = theirs.cast(mine.schema)
    order = [(k, "ascending") for k in keys]
    assert mine.sort_by(order).to_pylist() == theirs.sort_by(order).to_pylist()


def test_scores_equal_the_binarys_value_for_value(fleet, spark_run):
    out, _ = spark_run
    same_values(read(out, "rental_scores"), fleet.output("rental_scores"), ["rental_id"])
    same_values(read(out, "member_scores"), fleet.output("member_scores"), ["member_id"])


def test_rejected_rows_name_their_file_row_and_rule_as_the_binarys(fleet, spark_run):
    out, _ = spark_run
    for name in ("rejected_rentals", "rejected_telemetry"):
        theirs = fleet.output(name)
        assert theirs.num_rows > 0
        same_values(read(out, name), theirs, ["file", "row"])


def test_run_json_counts_as_the_binarys(fleet, spark_run):
    out, run = spark_run
    assert run["engine"] == "pitwall.spark" and run["model"]["id"] == fleet.run["model"]["id"]
    binary = fleet.run
    for k in ("telemetry_in_rentals", "telemetry_outside_rentals", "telemetry_duplicates"):
        assert run["inputs"][k] == binary["inputs"][k], k
    assert run["inputs"]["telemetry"]["rows"] == binary["inputs"]["telemetry"]["rows"]
    assert run["rentals"]["by_status"] == binary["rentals"]["by_status"]
    assert "pending" in run["rentals"]["by_status"], "late telemetry holds rentals back"
    assert run["members"]["by_status"] == binary["members"]["by_status"]
    assert run["rejected"]["telemetry"] == {k: v["count"] for k, v in binary["rejected"]["telemetry"].items()}
    assert run["rejected"]["rentals"] == {k: v["count"] for k, v in binary["rejected"]["rentals"].items()}


def test_a_car_whose_rentals_span_partitions_is_scored_whole(fleet, spark, spark_run):
    telemetry = pitwall.spark.read_telemetry(spark, str(fleet.dir / "telemetry"))
    assert telemetry.rdd.getNumPartitions() > 8, "the test's files are read in many partitions"
    per_car = (telemetry.groupBy("car_id").agg(pyspark.sql.functions.countDistinct("_pitwall_file").alias("files"))
               .where("files > 1").count())
    assert per_car > 0


def test_a_wrong_column_type_stops_the_job_before_it_starts_with_the_binarys_words(fleet, spark):
    from pyspark.sql import functions as F
    telemetry = spark.read.parquet(str(fleet.dir / "telemetry")).withColumn("speed_kmh", F.col("speed_kmh").cast("string"))
    rentals = spark.read.parquet(str(fleet.dir / "rentals.parquet"))
    with pytest.raises(ValueError, match="column speed_kmh has type Utf8; the telemetry contract wants"):
        pitwall.spark.score_fleet(rentals, telemetry, as_of=AS_OF)


def test_null_car_ids_and_dataframes_not_from_files_are_scored(spark, fleet):
    from pyspark.sql import Row
    import datetime as dt
    t0 = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc)
    rentals = spark.createDataFrame([Row(rental_id="r", member_id="m", car_id="c", start_at=t0,
                                         end_at=t0 + dt.timedelta(minutes=5))])
    rows = [Row(car_id=None if i == 3 else "c", ts=t0 + dt.timedelta(seconds=i), speed_kmh=30.0,
                speed_limit_kmh=50.0) for i in range(301)]
    telemetry = spark.createDataFrame(rows)
    s = pitwall.spark.score_fleet(rentals, telemetry, as_of=AS_OF)
    rejected = s.rejected_telemetry.collect()
    assert [(r.rule, r.file, r.row) for r in rejected] == [("car_id_empty", None, None)]
    local = pitwall.score(rentals.toArrow(), telemetry.toArrow(), as_of=AS_OF)
    assert s.rental_scores.toArrow().column("score").to_pylist() == local.rental_scores.column("score").to_pylist()


def test_its_output_seeds_a_score_state(fleet, spark_run, tmp_path):
    out, _ = spark_run
    state = tmp_path / "state"
    done = subprocess.run([pitwall_bin(), "score", "state", "import", "--state", str(state),
                           "--rental-results", str(out / "rental_scores.parquet"), "--as-of", AS_OF, "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shown = subprocess.run([pitwall_bin(), "score", "state", "show", "--state", str(state), "--json"],
                           capture_output=True, text=True, check=True)
    assert str(fleet.run["rentals"]["considered"] - fleet.run["rentals"]["by_status"].get("pending", 0)) in shown.stdout
