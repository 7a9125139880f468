"""pitwall's driving-score engine for notebooks and Spark.

The same engine as the ``pitwall`` binary, on Arrow data: scores equal
``pitwall score run``'s bit for bit. Inputs are anything Arrow can stream
(``pyarrow.Table``, a polars or pandas DataFrame); outputs are
``pyarrow.Table`` objects in the schemas of ``score run``'s Parquet files
(``.to_pandas()``, ``polars.from_arrow()`` to go on).

    import pitwall
    scores = pitwall.score(rentals, telemetry, as_of="2026-11-01T00:00:00Z")
    scores.rental_scores        # one row per considered rental
    scores.member_scores        # one row per member, at as_of
    scores.rejected_telemetry   # rows the contract refused, with their rule

Errors in the data or the model raise ``ValueError`` with the binary's
message; a bug in pitwall raises ``RuntimeError``, never aborts the
interpreter (or a Spark worker).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from typing import Any, Optional, Union

import pyarrow as pa

from pitwall import _engine
from pitwall._engine import DEFAULT_MODEL_TOML, Model, __version__

__all__ = [
    "Model", "Scores", "DEFAULT_MODEL_TOML", "__version__",
    "score", "member_scores", "check_rentals", "check_telemetry", "as_of_ms", "read_fit",
]

Time = Union[int, str, _dt.datetime]
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Scores:
    """The outputs of a scoring, as ``pitwall score run`` writes them."""

    rental_scores: pa.Table
    """One row per considered rental (ended by as_of), by rental_id."""
    member_scores: Optional[pa.Table]
    """One row per member with a considered rental, by member_id."""
    rejected_rentals: pa.Table
    """Rental rows the contract refused: row (0-based), rule, values as text."""
    rejected_telemetry: pa.Table
    """Telemetry rows the contract refused: row (0-based), rule, values as text."""
    counts: dict
    """Rows read, valid, inside rentals, duplicates removed."""


def as_of_ms(t: Time) -> int:
    """A time as ms since the epoch: an int (ms), RFC 3339 text, or a
    datetime (a naive one is taken as UTC, as the binary takes naive text)."""
    if isinstance(t, bool):
        raise TypeError("as_of: give a datetime, RFC 3339 text or ms since the epoch, not a bool")
    if isinstance(t, int):
        return t
    if isinstance(t, str):
        return _engine.parse_time(t)
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return (t - _EPOCH) // _dt.timedelta(milliseconds=1)
    raise TypeError(f"as_of: give a datetime, RFC 3339 text or ms since the epoch, not {type(t).__name__}")


def _table(data: Any, what: str) -> Any:
    """Something the engine can read through the Arrow C stream interface."""
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "__arrow_c_stream__"):
        return data
    if type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(f"{what}: expected Arrow data (a pyarrow Table, polars or pandas DataFrame), "
                    f"got {type(data).__name__}")


def _model(model: Optional[Model]) -> Model:
    return Model.default() if model is None else model


def score(rentals: Any, telemetry: Any, as_of: Time, model: Optional[Model] = None,
          grace: Optional[_dt.timedelta] = None, members: bool = True) -> Scores:
    """Scores the considered rentals (ended by ``as_of``) from their cars'
    telemetry, as ``pitwall score run`` does.

    ``rentals`` needs rental_id, member_id, car_id, start_at, end_at;
    ``telemetry`` needs car_id, ts, speed_kmh, speed_limit_kmh (the
    contracts of ``driving-score.md``). Rows that break a rule are returned
    in the ``rejected_*`` tables with their rule; a missing column or one of
    a type the contract does not allow raises ``ValueError``. ``grace``
    overrides the model's grace period for late telemetry.
    """
    grace_ms = None if grace is None else grace // _dt.timedelta(milliseconds=1)
    out = _engine.score(_table(rentals, "rentals"), _table(telemetry, "telemetry"),
                        as_of_ms(as_of), _model(model), grace_ms, members)
    return Scores(out["rental_scores"], out.get("member_scores"), out["rejected_rentals"],
                  out["rejected_telemetry"], out["counts"])


def member_scores(results: Any, as_of: Time, model: Optional[Model] = None) -> pa.Table:
    """Member scores at ``as_of`` from rental results: the rows of a
    ``rental_scores.parquet`` (or a score state's results), all of a
    member's rentals together."""
    return _engine.member_scores(_table(results, "results"), as_of_ms(as_of), _model(model))


def check_rentals(rentals: Any) -> tuple[pa.Table, pa.Table]:
    """Rentals under their contract: ``(valid, rejected)``. Valid rentals
    have ms UTC timestamps; identical copies of a row count once."""
    return _engine.check_rentals(_table(rentals, "rentals"))


def check_telemetry(telemetry: Any) -> tuple[pa.Table, pa.Table]:
    """Telemetry under its contract: ``(valid, rejected)``. Valid rows come
    back as they were given, every column kept."""
    return _engine.check_telemetry(_table(telemetry, "telemetry"))


def read_fit(out: "str | os.PathLike[str]") -> dict:
    """What ``pitwall score fit`` (or ``score validate``) wrote to ``out``,
    as tables: ``coefficients`` (one row per factor, with intervals and LR
    tests), ``lift`` (deciles of both models, a ``model`` column telling
    which), ``checks`` (the promotion checks), ``validation`` (the whole
    validation.json) and ``model`` (the fitted model, when there is one)."""
    path = os.fspath(out)
    with open(os.path.join(path, "validation.json")) as f:
        v = json.load(f)
    lift = []
    for side in ("candidate", "current"):
        judged = v.get("validation", {}).get(side)
        if judged:
            lift += [{"model": judged["model"], **d} for d in judged["lift"]["deciles"]]
    tables = {
        "coefficients": pa.Table.from_pylist(v.get("fit", {}).get("coefficients", [])),
        "lift": pa.Table.from_pylist(lift),
        "checks": pa.Table.from_pylist(v.get("validation", {}).get("checks", [])),
        "validation": v,
    }
    model = os.path.join(path, "model.toml")
    if os.path.exists(model):
        tables["model"] = Model.load(model)
    return tables
