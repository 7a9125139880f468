"""The example notebook runs whole, as a data scientist runs it, on a fleet
with claims: its own asserts check the package against the run."""
import subprocess
import sys

from conftest import AS_OF, ROOT, pitwall_bin


def test_the_notebook_recomputes_a_member_and_reads_a_fit(tmp_path):
    fleet, run, fit = tmp_path / "fleet", tmp_path / "run", tmp_path / "fit"
    pw = pitwall_bin()
    subprocess.run([pw, "gen", "fleet", "--out", str(fleet), "--rentals", "1500", "--seed", "3",
                    "--claims", str(ROOT / "models" / "planted-claims.toml")], check=True, capture_output=True)
    subprocess.run([pw, "score", "run", "--rentals", str(fleet / "rentals.parquet"), "--telemetry",
                    str(fleet / "telemetry"), "--as-of", AS_OF, "--out", str(run)], check=True, capture_output=True)
    subprocess.run([pw, "score", "fit", "--results", str(run / "rental_scores.parquet"), "--claims",
                    str(fleet / "claims.parquet"), "--split", "2026-07-01T00:00:00Z", "--resamples", "100",
                    "--out", str(fit)], check=True, capture_output=True)
    done = subprocess.run([sys.executable, str(ROOT / "notebooks" / "member_score.py"), str(fleet), str(run),
                           str(fit)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "the run's scores" in done.stdout
    assert "gini_interval_above_zero" in done.stdout
    assert list(run.glob("factors-*.png")), "the factors are plotted"
