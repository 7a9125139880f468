"""Parses deploy/airflow with Airflow's own DagBag (run in a venv with
apache-airflow and its cncf-kubernetes provider) and checks what the
score DAG promises: hourly, catchup, no overlap, retries, as_of taken
from the data interval's end, a UTC start date, JSON logs and both alert
sinks' keys from a Secret.

    AIRFLOW_HOME=$(mktemp -d) venv/bin/python deploy/check_dag.py
"""

import os
import sys
from datetime import datetime, timezone

from airflow.models import DagBag

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "airflow")

bag = DagBag(dag_folder=HERE, include_examples=False)
if bag.import_errors:
    sys.exit("DAG import errors:\n" + "\n".join(f"{k}: {v}" for k, v in bag.import_errors.items()))
# bag.dags, not get_dag(): reading the parsed DAG needs no metadata database.
dag = bag.dags.get("pitwall_driving_score")
failures = []
if dag is None:
    sys.exit("no DAG pitwall_driving_score in " + HERE)
task = dag.get_task("score_run")
args = task.arguments
expect = {
    "catchup is on (missed hours and backfills run)": dag.catchup is True,
    "runs never overlap": dag.max_active_runs == 1,
    "the task retries": task.retries >= 2,
    "it runs pitwall score run": task.cmds == ["pitwall"] and args[:2] == ["score", "run"],
    "as_of is the data interval's end": any(
        a.startswith("--as-of=") and "data_interval_end" in a for a in args),
    "the run directory is named after the interval": any(
        a.startswith("--out=") and "data_interval_end" in a for a in args),
    "the scores are published": "--publish" in args,
    "the runs share a score state on S3": any(
        a.startswith("--state=") and "s3://" in a for a in args),
    "the pod runs as non-root": task.security_context.run_as_non_root is True,
    # Airflow makes a naive date aware in its default_timezone, which is a
    # setting of the scheduler: the file itself must say UTC.
    "the start date is written timezone-aware": "tzinfo=timezone.utc)" in "".join(
        line.split("#")[0] for line in open(os.path.join(HERE, "pitwall_score.py"))
        if "start_date=" in line),
}
env_vars = {e.name: e for e in task.env_vars}
expect["logs are JSON lines"] = getattr(env_vars.get("PITWALL_LOG_JSON"), "value", None) == "true"
for name, key in [("PITWALL_SLACK_WEBHOOK_URL", "slack-webhook-url"),
                  ("PITWALL_OPSGENIE_API_KEY", "opsgenie-api-key")]:
    ref = getattr(getattr(env_vars.get(name), "value_from", None), "secret_key_ref", None)
    expect[f"{name} comes from a Secret"] = ref is not None and ref.key == key
# The as_of and run directory of the 10:00–11:00 interval, rendered as the worker would.
end = datetime(2026, 11, 1, 11, 0, tzinfo=timezone.utc)
env = dag.get_template_env()
rendered = [task.render_template(a, {"data_interval_end": end}, jinja_env=env)
            for a in args if a.startswith(("--as-of=", "--out="))]
expect["as_of renders as the interval's end, RFC 3339"] = rendered == [
    "--as-of=2026-11-01T11:00:00Z", "--out=/runs/20261101T110000Z"]
failures = [what for what, ok in expect.items() if not ok]
if failures:
    sys.exit("DAG checks failed:\n" + "\n".join(failures) + f"\nrendered: {rendered}")
print(f"DAG {dag.dag_id}: imports with Airflow's parser; {len(expect)} checks passed")
