"""The package against the binary on one generated fleet, and its errors."""
import bisect
import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import pitwall
from conftest import AS_OF


def same(a: pa.Table, b: pa.Table):
    """Equal values and types, column by column (nullability aside)."""
    assert a.column_names == b.column_names
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a.column(name).combine_chunks(), b.column(name).combine_chunks()
        assert x.type == y.type, name
        assert x.equals(y), f"column {name} differs"


@pytest.fixture(scope="module")
def scored(fleet):
    telemetry, starts = fleet.telemetry()
    return pitwall.score(fleet.rentals(), telemetry, as_of=AS_OF), starts


def test_rental_and_member_scores_equal_the_binarys_bit_for_bit(fleet, scored):
    scores, _ = scored
    same(scores.rental_scores, fleet.output("rental_scores"))
    same(scores.member_scores, fleet.output("member_scores"))
    assert scores.rental_scores.num_rows == fleet.run["rentals"]["considered"]


def test_rejected_rows_are_the_binarys_with_their_rules(fleet, scored):
    scores, starts = scored
    same(scores.rejected_rentals.drop_columns(["file"]),
         fleet.output("rejected_rentals").drop_columns(["file"]))
    # Rows of the concatenated telemetry, mapped back to their file and row there.
    mine = scores.rejected_telemetry.to_pylist()
    for r in mine:
        k = bisect.bisect_right(starts, r["row"]) - 1
        r["file"], r["row"] = fleet.telemetry_files[k], r["row"] - starts[k]
    theirs = fleet.output("rejected_telemetry").to_pylist()
    assert len(mine) > 0
    assert sorted(mine, key=lambda r: (r["file"], r["row"])) == theirs


def test_duplicated_and_late_samples_count_as_the_binary_counts_them(fleet, scored):
    scores, _ = scored
    inputs, c = fleet.run["inputs"], scores.counts
    assert (c["telemetry_rows"], c["telemetry_valid"]) == (inputs["telemetry"]["rows"], inputs["telemetry"]["valid"])
    assert c["samples_in_rentals"] == inputs["telemetry_in_rentals"]
    assert c["samples_outside_rentals"] == inputs["telemetry_outside_rentals"]
    assert c["duplicate_samples"] == inputs["telemetry_duplicates"] > 0, "the fleet redelivers files"
    statuses = pc.value_counts(scores.rental_scores.column("status")).to_pylist()
    assert {s["values"]: s["counts"] for s in statuses} == fleet.run["rentals"]["by_status"]
    assert "pending" in fleet.run["rentals"]["by_status"], "late telemetry holds some back"


def test_member_scores_from_results_equal_the_binarys(fleet):
    members = pitwall.member_scores(fleet.output("rental_scores"), as_of=AS_OF)
    same(members, fleet.output("member_scores"))


def test_inputs_may_be_pandas_or_polars_and_as_of_a_datetime(fleet, scored):
    scores, _ = scored
    telemetry, _ = fleet.telemetry()
    when = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    again = pitwall.score(fleet.rentals().to_pandas(), telemetry.to_batches()[0], as_of=when)
    first = telemetry.to_batches()[0]
    assert again.counts["telemetry_rows"] == first.num_rows
    assert pitwall.as_of_ms(when) == pitwall.as_of_ms(AS_OF) == pitwall.as_of_ms(dt.datetime(2026, 11, 1))
    polars = pytest.importorskip("polars")
    via_polars = pitwall.score(polars.from_arrow(fleet.rentals()), polars.from_arrow(telemetry), as_of=AS_OF)
    same(via_polars.rental_scores, scores.rental_scores)


def test_checks_return_valid_rows_and_rejected_rows_with_their_rule(fleet):
    telemetry, _ = fleet.telemetry()
    valid, rejected = pitwall.check_telemetry(telemetry)
    assert valid.num_rows + rejected.num_rows == telemetry.num_rows
    assert valid.schema == telemetry.schema
    assert set(rejected.column("rule").to_pylist()) <= {
        "car_id_empty", "ts_null", "speed_null", "speed_out_of_range", "speed_limit_invalid"}
    valid, rejected = pitwall.check_rentals(fleet.rentals())
    assert rejected.num_rows == fleet.output("rejected_rentals").num_rows
    assert valid.num_rows == fleet.run["rentals"]["valid"]


def test_the_model_loads_prints_and_names_itself(tmp_path):
    m = pitwall.Model.default()
    assert m.to_toml() == str(m) and "[score]" in str(m)
    p = tmp_path / "model.toml"
    p.write_text(str(m))
    assert pitwall.Model.load(p) == m
    assert m.id == pitwall.Model.from_toml(pitwall.DEFAULT_MODEL_TOML).id


def test_a_model_with_a_nan_is_refused_as_the_binary_refuses_it(tmp_path):
    text = str(pitwall.Model.default())
    bad = tmp_path / "nan.toml"
    bad.write_text(text.replace("intercept = ", "intercept = nan #", 1))
    with pytest.raises(ValueError, match=f"model file {bad}: model "):
        pitwall.Model.load(bad)
    with pytest.raises(ValueError, match="cannot read model file"):
        pitwall.Model.load(tmp_path / "missing.toml")


def test_a_wrong_column_type_or_a_missing_column_raises_with_the_binarys_words(fleet):
    telemetry, _ = fleet.telemetry()
    wrong = telemetry.set_column(2, "speed_kmh", pc.cast(telemetry.column("speed_kmh"), pa.string()))
    with pytest.raises(ValueError, match="telemetry: column speed_kmh has type Utf8; the telemetry contract wants"):
        pitwall.score(fleet.rentals(), wrong, as_of=AS_OF)
    with pytest.raises(ValueError, match='no column "end_at"'):
        pitwall.score(fleet.rentals().drop_columns(["end_at"]), telemetry, as_of=AS_OF)
    with pytest.raises(TypeError, match="expected Arrow data"):
        pitwall.score([1, 2], telemetry, as_of=AS_OF)
    with pytest.raises(ValueError, match="is not a time"):
        pitwall.score(fleet.rentals(), telemetry, as_of="yesterday")


def test_a_null_car_id_is_a_rejected_row_not_an_error(fleet):
    rentals = fleet.rentals()
    telemetry = pa.table({"car_id": pa.array([None, "C1"], pa.string()),
                          "ts": pa.array([0, 1000], pa.timestamp("ms", "UTC")),
                          "speed_kmh": [10.0, 10.0], "speed_limit_kmh": [None, 50.0]})
    scores = pitwall.score(rentals, telemetry, as_of=AS_OF)
    assert scores.rejected_telemetry.column("rule").to_pylist() == ["car_id_empty"]


def test_a_panic_in_rust_is_a_python_exception():
    with pytest.raises(RuntimeError, match="pitwall panicked, a bug in pitwall: on purpose"):
        pitwall._engine._panic()
