"""Fixtures of the Python package's tests: a generated fleet, scored once
by the pitwall binary, which every test compares the package against.

PITWALL_BIN names the binary (scripts/test.sh passes the debug build)."""
import json
import os
import pathlib
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

AS_OF = "2026-11-01T00:00:00Z"
ROOT = pathlib.Path(__file__).resolve().parents[3]


def pitwall_bin():
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return os.environ.get("PITWALL_BIN", os.path.join(target, "debug", "pitwall"))


class Fleet:
    """A fleet on disk, the binary's outputs for it, and its inputs as tables."""

    def __init__(self, root: pathlib.Path, rentals: int, seed: int):
        self.dir = root / "fleet"
        self.out = root / "binary"
        run = [pitwall_bin(), "gen", "fleet", "--out", str(self.dir), "--rentals", str(rentals),
               "--seed", str(seed)]
        subprocess.run(run, check=True, stdout=subprocess.DEVNULL)
        score = [pitwall_bin(), "score", "run", "--rentals", str(self.dir / "rentals.parquet"),
                 "--telemetry", str(self.dir / "telemetry"), "--as-of", AS_OF, "--out", str(self.out)]
        code = subprocess.run(score, stdout=subprocess.DEVNULL).returncode
        assert code in (0, 3), f"pitwall score run exited {code}"
        self.run = json.loads((self.out / "run.json").read_text())
        self.telemetry_files = sorted(str(p) for p in (self.dir / "telemetry").rglob("*.parquet"))

    def output(self, name):
        return pq.read_table(self.out / f"{name}.parquet")

    def rentals(self):
        return pq.read_table(self.dir / "rentals.parquet")

    def telemetry(self):
        """Every file's rows in file order, and where each file starts."""
        tables = [pq.read_table(f) for f in self.telemetry_files]
        starts, n = [], 0
        for t in tables:
            starts.append(n)
            n += t.num_rows
        schema = tables[0].schema
        return pa.concat_tables([t.cast(schema) for t in tables]), starts


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    return Fleet(tmp_path_factory.mktemp("fleet"), rentals=300, seed=11)
