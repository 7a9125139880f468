"""Hourly driving scores: `pitwall score run` in a Kubernetes pod, as of the
end of each data interval, then published to Kafka.

- as_of is `data_interval_end`, so a rerun or a backfill of an hour scores
  exactly what that hour's run saw, and writes the same run directory;
- catchup is on: when the scheduler was down, or for a new start_date, the
  missed hours run in order (`airflow dags backfill` works the same way);
- runs never overlap (max_active_runs=1): a member's score depends on the
  previous hour's;
- the runs share a score state on S3 (`--state`): each evaluates only the
  rentals that can still change and reads only the telemetry partitions that
  can hold them. A state moves forward only, so catchup runs the missed hours
  in order; to score a past day again after a source fix, run one task with
  `--rescore-from/--rescore-to` instead of clearing old task instances (an
  as_of before the state's last run exits 1);
- exit 3 from pitwall means "held by a quality gate" (late or missing data):
  the task fails and retries later, when the late data may have arrived.
  Exit 1 (an error) retries the same way; the last failure alerts through
  pitwall's own notifier (Slack/Opsgenie) as well as Airflow's.

Copy this file into the DAGs folder and set the Airflow Variables named
below (or edit the defaults).
"""

from datetime import datetime, timedelta, timezone

try:  # Airflow 3
    from airflow.sdk import DAG, Variable
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.models import Variable

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

IMAGE = "ghcr.io/pitwall/pitwall:0.1.0"
NAMESPACE = "data-platform"


def setting(name, default):
    """An Airflow Variable, read when the task runs (not when the DAG is parsed)."""
    return "{{ var.value.get('pitwall_%s', '%s') }}" % (name, default)


def secret_env(name, key):
    """An alert sink's setting from the pitwall-alerts Secret; absent is allowed."""
    return k8s.V1EnvVar(
        name=name,
        value_from=k8s.V1EnvVarSource(
            secret_key_ref=k8s.V1SecretKeySelector(name="pitwall-alerts", key=key, optional=True)
        ),
    )


with DAG(
    dag_id="pitwall_driving_score",
    description="Hourly driving scores of the car-sharing members, published to Kafka",
    schedule="15 * * * *",
    # Aware, in UTC: a naive date is read in the scheduler's own timezone,
    # which shifts every as_of by its offset.
    start_date=datetime(2026, 11, 1, tzinfo=timezone.utc),
    catchup=True,
    max_active_runs=1,
    default_args={
        "owner": "data-platform",
        "retries": 3,
        "retry_delay": timedelta(minutes=15),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
        "execution_timeout": timedelta(minutes=50),
    },
    tags=["pitwall", "driving-score"],
) as dag:
    KubernetesPodOperator(
        task_id="score_run",
        name="pitwall-score",
        namespace=NAMESPACE,
        image=IMAGE,
        service_account_name="pitwall",
        cmds=["pitwall"],
        arguments=[
            "score",
            "run",
            "--rentals=" + setting("rentals", "s3://company-lake/rentals/"),
            "--telemetry=" + setting("telemetry", "s3://company-lake/telemetry/"),
            "--as-of={{ data_interval_end.strftime('%Y-%m-%dT%H:%M:%SZ') }}",
            "--out=/runs/{{ data_interval_end.strftime('%Y%m%dT%H%M%SZ') }}",
            "--state=" + setting("state", "s3://company-lake/score-state/"),
            "--publish",
            "--brokers=" + setting("brokers", "b-1.msk.example.internal:9094"),
            "--security-protocol=ssl",
            "--registry=" + setting("registry", "glue:driving-score"),
            "--json",
        ],
        env_vars=[
            k8s.V1EnvVar(name="AWS_REGION", value=setting("aws_region", "eu-central-1")),
            # One JSON object per line, for the log aggregator.
            k8s.V1EnvVar(name="PITWALL_LOG_JSON", value="true"),
            k8s.V1EnvVar(name="PITWALL_LOG", value="info"),
            secret_env("PITWALL_SLACK_WEBHOOK_URL", "slack-webhook-url"),
            secret_env("PITWALL_OPSGENIE_API_KEY", "opsgenie-api-key"),
        ],
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "2", "memory": "2Gi"}, limits={"memory": "4Gi"}
        ),
        volumes=[
            k8s.V1Volume(
                name="runs",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name="pitwall-score-runs"
                ),
            )
        ],
        volume_mounts=[k8s.V1VolumeMount(name="runs", mount_path="/runs")],
        security_context=k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=10001),
        # run.json on stdout becomes the task's XCom, for downstream tasks.
        do_xcom_push=False,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
    )
