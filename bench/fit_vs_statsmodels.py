#!/usr/bin/env python3
"""Benchmark: `pitwall score fit` (read the results and claims, the Poisson
fit with its likelihood-ratio tests, and the whole validation with the
1,000-resample bootstrap of both models' Gini) against statsmodels' GLM fit
alone on the same rows, 2 threads each, in the same run.

The data (generated once): `pitwall gen results` — 2 M rental results of
200,000 members over a year, features drawn per member style — and claims
drawn from models/planted-claims.toml. The split leaves the last three months
for validation.

statsmodels' side is given its design matrix ready (built with DuckDB from
the same files under the same claims rules, not timed) and times only
`GLM(y, X, family=Poisson(), offset=log(d/100)).fit()`. Its coefficients
and standard errors must agree with pitwall's to a relative 1e-6.

Printed: wall time and peak RSS of each, the ratio, and pitwall's own stage
times (read, claims, fit, validation) with its fit stage against
statsmodels' fit. Exit status 1 when the fits disagree, 3 when the goal
(ratio <= 0.25) is missed, 0 otherwise.

    python3 bench/fit_vs_statsmodels.py                      # 2 M rentals
    python3 bench/fit_vs_statsmodels.py --rentals 200000     # a quick look
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
SPLIT = "2026-08-01T00:00:00Z"
SPLIT_MS = 1_785_542_400_000

# The design of score-model-fitting.md under psf-v1's caps: scored rentals
# that ended before the split; at-fault claims that pass the claims contract.
DESIGN_SQL = """
WITH c AS (
  SELECT * FROM read_parquet('{claims}')
), ok AS (
  SELECT c.claim_id, c.rental_id, c.at_fault
  FROM c JOIN read_parquet('{results}') r USING (rental_id)
  WHERE coalesce(c.claim_id, '') <> '' AND c.at_fault IS NOT NULL
    AND c.severity IN ('minor', 'major', 'total_loss')
    AND epoch_ms(c.occurred_at) BETWEEN epoch_ms(r.start_at) AND epoch_ms(r.end_at) + 3600000
), uniq AS (
  -- identical copies count once; an id on rows that differ counts never
  SELECT claim_id, any_value(rental_id) AS rental_id, any_value(at_fault) AS at_fault
  FROM (SELECT DISTINCT c.* FROM c JOIN ok USING (claim_id)) GROUP BY claim_id HAVING count(*) = 1
), y AS (
  SELECT rental_id, count(*) AS claims FROM uniq WHERE at_fault GROUP BY rental_id
)
SELECT
  CASE WHEN harsh_accel_n = 0 THEN 0 ELSE least(harsh_accel_n / distance_km * 100, 20) END,
  CASE WHEN harsh_brake_n = 0 THEN 0 ELSE least(harsh_brake_n / distance_km * 100, 20) END,
  CASE WHEN unstable_stop_n = 0 THEN 0 ELSE least(unstable_stop_n / distance_km * 100, 10) END,
  CASE WHEN moving_s = 0 THEN 0 ELSE least(speeding_s / moving_s * 100, 30) END,
  CASE WHEN moving_s = 0 THEN 0 ELSE least(excess_speeding_s / moving_s * 100, 10) END,
  ln(distance_km / 100), coalesce(y.claims, 0)
FROM read_parquet('{results}') r LEFT JOIN y USING (rental_id)
WHERE status = 'scored' AND distance_km > 0 AND epoch_ms(end_at) < {split_ms}
ORDER BY rental_id
"""

STATSMODELS_FIT = r"""
import json, sys, time
import numpy as np
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.genmod import families
d = np.load(sys.argv[1])
X = np.column_stack([np.ones(len(d)), d[:, :5]])
t = time.perf_counter()
r = GLM(d[:, 6], X, family=families.Poisson(), offset=d[:, 5]).fit()
secs = time.perf_counter() - t
json.dump({"seconds": secs, "params": list(r.params), "bse": list(r.bse), "deviance": r.deviance,
           "aic": r.aic}, open(sys.argv[2], "w"))
"""


def run_measured(cmd, env=None):
    """Runs cmd; returns (seconds, peak RSS bytes, exit code) of that child alone."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    return time.perf_counter() - t, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rentals", type=int, default=2_000_000)
    ap.add_argument("--work", default="/tmp/pitwall-bench-fit")
    ap.add_argument("--pitwall", default=None, help="pitwall binary (default: release build in CARGO_TARGET_DIR)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="runs per side; the best is reported")
    a = ap.parse_args()

    target = os.environ.get("CARGO_TARGET_DIR", str(HERE.parent / "target"))
    pitwall = a.pitwall or os.path.join(target, "release", "pitwall")
    work = pathlib.Path(a.work) / f"r{a.rentals}"
    results, claims = work / "rental_scores.parquet", work / "claims.parquet"
    if not claims.exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        print("generating results and planted claims (once) ...", file=sys.stderr)
        subprocess.run([pitwall, "gen", "results", "--rentals", str(a.rentals), "--out", str(work),
                        "--claims", str(HERE.parent / "models" / "planted-claims.toml")],
                       check=True, stdout=subprocess.DEVNULL)
    import duckdb
    import numpy as np
    design = work / "design.npy"
    if not design.exists():
        rows = duckdb.connect().sql(DESIGN_SQL.format(results=results, claims=claims, split_ms=SPLIT_MS)).fetchnumpy()
        np.save(design, np.column_stack([np.asarray(v, dtype=float) for v in rows.values()]))
    for f in work.glob("*.parquet"):
        f.read_bytes()  # the page cache warm for both sides

    threads = str(a.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    best = {}
    for _ in range(a.repeat):
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        t, rss, code = run_measured([pitwall, "score", "fit", "--results", str(results), "--claims", str(claims),
                                     "--split", SPLIT, "--out", str(out), "--threads", threads,
                                     "--resamples", "1000"], env={**env, "PITWALL_LOG": "warn"})
        if code != 0:
            sys.exit(f"pitwall score fit failed with exit code {code}")
        best["pitwall"] = min(best.get("pitwall", (t, rss)), (t, rss))
        sm_out = work / "statsmodels.json"
        t, rss, code = run_measured([sys.executable, "-c", STATSMODELS_FIT, str(design), str(sm_out)], env=env)
        if code != 0:
            sys.exit(f"the statsmodels fit failed with exit code {code}")
        sm = json.loads(sm_out.read_text())
        best["statsmodels"] = min(best.get("statsmodels", (sm["seconds"], rss)), (sm["seconds"], rss))

    doc = json.loads((work / "out" / "validation.json").read_text())
    coef = doc["fit"]["coefficients"]
    worst = 0.0
    for c, b, se in zip(coef, sm["params"], sm["bse"]):
        worst = max(worst, abs(c["estimate"] - b) / max(abs(b), 1e-12), abs(c["std_error"] - se) / se)
    (pw, pw_rss), (st, st_rss) = best["pitwall"], best["statsmodels"]
    ratio = pw / st
    v = doc["validation"]
    print(f"rows: {doc['fit']['rentals']:,} fitted, {v['rentals']:,} validated; "
          f"{int(doc['fit']['claims']):,} training claims")
    print(f"pitwall score fit (read, fit + LR tests, validation with 1,000-resample bootstrap): "
          f"{pw:6.2f} s   peak RSS {pw_rss / 2**20:7.1f} MiB")
    print(f"statsmodels GLM.fit alone (design given):                                        "
          f"{st:6.2f} s   peak RSS {st_rss / 2**20:7.1f} MiB")
    print(f"ratio pitwall/statsmodels: {ratio:.3f} (goal <= 0.25)")
    # Where pitwall's time went (its own clock, validation.json of the last
    # run), and its fit stage alone against statsmodels' fit alone.
    ms = doc["timings_ms"]
    print(f"pitwall stages: read results {ms['read_results']} ms, claims {ms['read_claims']} ms, "
          f"fit + LR tests {ms['fit']} ms, validation {ms['validate']} ms; "
          f"fit stage / statsmodels fit: {ms['fit'] / 1000 / st:.3f}")
    print(f"agreement: largest relative difference of a beta or SE: {worst:.2e} (must be <= 1e-6)")
    print(f"candidate Gini {v['candidate']['gini']['normalised']:.3f} "
          f"[{v['candidate']['gini']['ci_low']:.3f}, {v['candidate']['gini']['ci_high']:.3f}]")
    if worst > 1e-6:
        sys.exit(1)
    if ratio > 0.25:
        sys.exit(3)


if __name__ == "__main__":
    main()
