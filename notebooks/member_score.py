# %% [markdown]
# # Inside one member's score
#
# A notebook in cells (`# %%`: VS Code, PyCharm and Jupyter with jupytext
# open it as one; `python notebooks/member_score.py FLEET RUN [FIT]` runs it
# whole). It loads a run's outputs, recomputes one member's score from its
# rentals with the `pitwall` package — the binary's engine, so the numbers
# are the run's — recomputes those rentals from their telemetry, plots the
# member's factors against the fleet, and reads a model fit back as tables.
#
# Inputs, on a laptop (docs/python.md):
#
#     pitwall gen fleet --out /tmp/fleet --rentals 1500 --claims models/planted-claims.toml
#     pitwall score run --rentals /tmp/fleet/rentals.parquet --telemetry /tmp/fleet/telemetry \
#         --as-of 2026-11-01T00:00:00Z --out /tmp/run
#     pitwall score fit --results /tmp/run/rental_scores.parquet --claims /tmp/fleet/claims.parquet \
#         --split 2026-07-01T00:00:00Z --out /tmp/fit

# %%
import json
import pathlib
import sys

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

import pitwall

FLEET = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fleet")
RUN = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/run")
FIT = pathlib.Path(sys.argv[3]) if len(sys.argv) > 3 else None
run = json.loads((RUN / "run.json").read_text())
AS_OF = run["as_of"]
print(f"run {run['run_id']} at {AS_OF}, model {run['model']['id']}")

# %% [markdown]
# ## The run's outputs

# %%
rentals = pq.read_table(RUN / "rental_scores.parquet")
members = pq.read_table(RUN / "member_scores.parquet")
print(f"{rentals.num_rows} rentals, {members.num_rows} members")
members.to_pandas()[["member_id", "status", "score", "grade", "rentals_used"]].head()

# %% [markdown]
# ## One member, recomputed from its rentals
#
# The eligible member with the lowest score: the one a reviewer asks about.

# %%
scored = members.filter(pc.field("status") == "scored").sort_by([("score", "ascending")])
member = scored.column("member_id")[0].as_py()
theirs = rentals.filter(pc.field("member_id") == member)
again = pitwall.member_scores(theirs, as_of=AS_OF)
in_run = members.filter(pc.field("member_id") == member)
assert again.column("score").equals(in_run.column("score")), "the package gives the run's score"
row = again.to_pylist()[0]
print(f"member {member}: {row['score']} ({row['grade']}) from {row['rentals_used']} rentals")
[(r["rental_id"], r["score"], round(r["distance_km"], 1)) for r in row["recent_rentals"]]

# %% [markdown]
# ## Its rentals, recomputed from their telemetry

# %%
used = [r["rental_id"] for r in row["recent_rentals"]]
its_rentals = pq.read_table(FLEET / "rentals.parquet").filter(pc.field("rental_id").isin(used))
cars = pc.unique(its_rentals.column("car_id"))
start, end = pc.min(its_rentals.column("start_at")), pc.max(its_rentals.column("end_at"))
telemetry = ds.dataset(FLEET / "telemetry", format="parquet").to_table(
    filter=pc.field("car_id").isin(cars) & (pc.field("ts") >= start) & (pc.field("ts") <= end))
fresh = pitwall.score(its_rentals, telemetry, as_of=AS_OF)
same = fresh.rental_scores.select(["rental_id", "score"]).sort_by("rental_id")
expected = theirs.filter(pc.field("rental_id").isin(used)).select(["rental_id", "score"]).sort_by("rental_id")
assert same.equals(expected), "rentals recomputed from telemetry score as in the run"
print(f"{len(used)} rentals from {telemetry.num_rows:,} samples: the run's scores")

# %% [markdown]
# ## Its factors against the fleet

# %%
FACTORS = ["harsh_accel_per_100km", "harsh_brake_per_100km", "unstable_stop_per_100km",
           "speeding_pct", "excess_speeding_pct"]
fleet = members.filter(pc.field("status") == "scored").to_pandas()
percentile = {f: (fleet[f] <= row[f]).mean() * 100 for f in FACTORS}
for f in FACTORS:
    print(f"{f:26} {row[f]:7.2f}   fleet p50 {fleet[f].median():6.2f}   this member at p{percentile[f]:.0f}")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(FACTORS, [percentile[f] for f in FACTORS])
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"percentile among scored members (member {member})")
    fig.tight_layout()
    fig.savefig(RUN / f"factors-{member}.png")
    print(f"plotted to {RUN / f'factors-{member}.png'}")
except ImportError:
    print("matplotlib is not installed: no plot")

# %% [markdown]
# ## A model fit, as tables

# %%
if FIT is not None:
    fit = pitwall.read_fit(FIT)
    print(fit["coefficients"].to_pandas()[["name", "estimate", "ci_low", "ci_high"]])
    lift = fit["lift"].to_pandas().pivot(index="decile", columns="model", values="per_1000_km")
    print(lift)
    print(fit["checks"].to_pandas()[["name", "passed"]])
    if "model" in fit:
        print(fit["model"].id)
