"""Checks the deployment files without a cluster:

- the Helm chart renders (Go text/template + Sprig, as `helm template` does:
  deploy/helm/render) with its defaults and with every ci/*-values.yaml;
- every rendered object is valid Kubernetes (kubernetes-validate, strict:
  unknown fields are errors) and has no duplicate keys;
- what the ingestion and score workloads need holds: probes on /healthz and
  /readyz, a grace period longer than a flush, a PDB matching the pods,
  scrape annotations or a ServiceMonitor, a non-root read-only pod, the
  contract ConfigMap equal to contracts/, one Deployment per ingestion
  dataset with its own stream and lease table, the score CronJob's shell
  line producing a valid as_of, or in watch mode one watcher replica
  (Recreate) with its lease in DynamoDB;
- values.schema.json refuses a wrong type, an unknown key or a bad enum,
  naming the key, as helm does before rendering;
- the PrometheusRule and the dashboard ConfigMap hold their files as they are;
- the doctor hook checks each dataset and the score with their own flags,
  and is refused without a service account that exists before the chart's;
- every container logs JSON lines at the level values.logs gives, and
  NOTES.txt renders and says how to reach each enabled part;
- the Dockerfile is multi-stage and its runtime stage runs as a numeric
  non-root user.

    python3 deploy/check_chart.py --render BIN

Exits 1 naming every failed check.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "deploy", "helm", "pitwall")
K8S_VERSION = "1.30"

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


class StrictLoader(yaml.SafeLoader):
    """A loader that refuses duplicate keys (PyYAML keeps the last silently)."""


def _no_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def render(binary, values=(), expect_error=False):
    cmd = [binary]
    for v in values:
        cmd += ["-f", v]
    cmd.append(CHART)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if expect_error:
        return r.returncode, r.stderr
    if r.returncode != 0:
        sys.exit(f"rendering {values or 'the defaults'} failed: {r.stderr}")
    docs = [d for d in yaml.load_all(r.stdout, Loader=StrictLoader) if d]
    return docs


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def validate(docs, label):
    for d in docs:
        name = f"{label}: {d.get('kind')}/{d.get('metadata', {}).get('name')}"
        if d.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked by hand below
        try:
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            check(False, f"{name} is not valid Kubernetes {K8S_VERSION}: {e.message} at {list(e.path)}")


def container(pod_spec, name):
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def datasets(values):
    """The enabled ingestion datasets, each merged over the ingest defaults."""
    base = {k: v for k, v in values["ingest"].items() if k != "datasets"}
    return {name: merge(base, ds) for name, ds in values["ingest"]["datasets"].items()
            if ds.get("enabled", True) is not False}


def check_ingest(k, label, values):
    ds = datasets(values)
    check(len({d["leases"] for d in ds.values()}) == len(ds),
          f"{label}: two ingestion datasets share a lease table (shard ids repeat across streams)")
    check(len({d["stream"] for d in ds.values()}) == len(ds), f"{label}: two datasets read one stream")
    pdbs = k.get("PodDisruptionBudget", [])
    check(len(pdbs) == len(ds), f"{label}: not one PodDisruptionBudget per ingestion dataset")
    for name, d in ds.items():
        check_dataset(k, f"{label} [{name}]", values, name, d)


def check_dataset(k, label, values, name, d):
    dep = next(x for x in k["Deployment"] if x["metadata"]["name"].endswith(f"-ingest-{name}"))
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    c = container(spec, "ingest")
    port = next(p for p in c["ports"] if p["name"] == "http")["containerPort"]
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{label}: liveness probe is not /healthz")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{label}: readiness probe is not /readyz")
    check(f"--listen=0.0.0.0:{port}" in c["args"], f"{label}: the container does not listen on its http port")
    check(f"--stream={d['stream']}" in c["args"] and f"--leases={d['leases']}" in c["args"],
          f"{label}: the container does not read its own stream with its own lease table")
    grace = spec["terminationGracePeriodSeconds"]
    failover = int(re.match(r"(\d+)s$", d["failover"]).group(1))
    check(grace >= 60 and grace > failover * 3,
          f"{label}: terminationGracePeriodSeconds {grace} leaves no time to flush files")
    check(spec["securityContext"].get("runAsNonRoot") is True, f"{label}: ingest pod may run as root")
    check(c["securityContext"].get("readOnlyRootFilesystem") is True, f"{label}: root filesystem is writable")
    check(c["securityContext"].get("allowPrivilegeEscalation") is False, f"{label}: privilege escalation allowed")
    check(spec["serviceAccountName"] in {s["metadata"]["name"] for s in k.get("ServiceAccount", [])}
          or not values["serviceAccount"]["create"],
          f"{label}: the pods' service account is not in the chart")
    with open(os.path.join(ROOT, "contracts", d["contract"])) as f:
        shipped = f.read()
    env = {e["name"]: e for e in c["env"]}
    if "hmac_sha256" in shipped:
        check("secretKeyRef" in env.get("PITWALL_PII_KEY", {}).get("valueFrom", {}),
              f"{label}: PITWALL_PII_KEY does not come from a Secret")
    else:
        check("PITWALL_PII_KEY" not in env, f"{label}: gets the PII key its contract does not need")
    for e in c["env"]:
        check("value" not in e or not re.search(r"(?i)secret|key|token|webhook", e["name"]),
              f"{label}: {e['name']} is a literal value, not a Secret reference")
    labels = pod["metadata"]["labels"]
    selector = dep["spec"]["selector"]["matchLabels"]
    check(all(labels.get(k2) == v for k2, v in selector.items()), f"{label}: Deployment selector misses its pods")
    pdb = [p for p in k.get("PodDisruptionBudget", []) if p["spec"]["selector"]["matchLabels"] == selector]
    check(len(pdb) == 1, f"{label}: no PodDisruptionBudget selects exactly these pods")
    svc = next(s for s in k["Service"] if s["metadata"]["name"].endswith(f"-ingest-{name}"))
    check(svc["spec"]["selector"] == selector, f"{label}: the Service selects other pods than the Deployment's")
    check_scraped(k, label, pod, svc, port)
    cm_name = next(v["configMap"]["name"] for v in spec["volumes"] if v["name"] == "contract")
    cm = next(m for m in k["ConfigMap"] if m["metadata"]["name"] == cm_name)
    check(cm["data"].get(d["contract"], "").strip() == shipped.strip(),
          f"{label}: the chart's contract (deploy/helm/pitwall/files/) differs from contracts/")
    mount = next(m for m in c["volumeMounts"] if m["name"] == "contract")["mountPath"]
    check(f"--contract={mount}/{d['contract']}" in c["args"],
          f"{label}: --contract does not name the mounted contract")


def check_scraped(k, label, pod, svc, port):
    """Prometheus is told to scrape /metrics on the pods' port: by their
    annotations, or by a ServiceMonitor that selects their Service (by the
    Service's own labels, as the Operator does) and names its http port."""
    ann = pod["metadata"].get("annotations", {})
    monitors = k.get("ServiceMonitor", [])
    check(ann.get("prometheus.io/scrape") == "true" or monitors, f"{label}: nothing tells Prometheus to scrape")
    if ann.get("prometheus.io/scrape") == "true":
        check(ann.get("prometheus.io/port") == str(port) and ann.get("prometheus.io/path") == "/metrics",
              f"{label}: scrape annotations point elsewhere than /metrics on {port}")
    if monitors:
        svc_labels = svc["metadata"].get("labels", {})
        ports = {p["name"] for p in svc["spec"]["ports"]}
        check(any(all(svc_labels.get(a) == b for a, b in m["spec"]["selector"]["matchLabels"].items())
                  and m["spec"]["endpoints"][0]["port"] in ports
                  and m["spec"]["endpoints"][0]["path"] == "/metrics" for m in monitors),
              f"{label}: no ServiceMonitor selects the Service {svc['metadata']['name']} and its http port")


def check_watch(k, label, values):
    check("CronJob" not in k, f"{label}: watch mode also renders the hourly CronJob")
    dep = next(d for d in k["Deployment"] if d["metadata"]["name"].endswith("-score-watch"))
    check(dep["spec"]["replicas"] == 1, f"{label}: more than one watcher replica")
    check(dep["spec"]["strategy"]["type"] == "Recreate",
          f"{label}: a rolling update would wait forever for a new watcher that cannot get the lease")
    spec = dep["spec"]["template"]["spec"]
    c = container(spec, "score-watch")
    check(c["args"][:2] == ["score", "watch"], f"{label}: the container does not run score watch")
    args = dict(a[2:].split("=", 1) for a in c["args"] if a.startswith("--") and "=" in a)
    check(args.get("state", "").startswith("s3://"), f"{label}: the watched state is not on S3")
    check(args.get("leases", "").startswith("dynamodb:"), f"{label}: the watcher's lease is not in DynamoDB")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{label}: watch liveness probe is not /healthz")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{label}: watch readiness probe is not /readyz")
    grace = spec["terminationGracePeriodSeconds"]
    check(grace >= 60, f"{label}: terminationGracePeriodSeconds {grace} cuts the cycle under way short")
    check(spec["securityContext"].get("runAsNonRoot") is True, f"{label}: watch pod may run as root")
    check("PITWALL_PII_KEY" not in {e["name"] for e in c.get("env", [])},
          f"{label}: the watcher gets the PII key it does not need")
    svc = next(s for s in k["Service"] if s["metadata"]["name"].endswith("-score-watch"))
    check(svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"],
          f"{label}: the watcher's Service selects other pods than its Deployment's")
    check_scraped(k, label, dep["spec"]["template"], svc, values["score"]["watch"]["port"])


def check_score(k, label, values):
    cron = next(d for d in k["CronJob"] if d["metadata"]["name"].endswith("-score"))
    check(cron["spec"]["concurrencyPolicy"] == "Forbid", f"{label}: score runs may overlap")
    spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    check(spec["restartPolicy"] == "Never", f"{label}: a failed score pod restarts in place")
    check(spec["securityContext"].get("runAsNonRoot") is True, f"{label}: score pod may run as root")
    c = container(spec, "score")
    line = c["args"][0]
    # The container's shell line, run with a stand-in pitwall that prints its arguments.
    with tempfile.TemporaryDirectory() as d:
        stub = os.path.join(d, "pitwall")
        with open(stub, "w") as f:
            f.write('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
        os.chmod(stub, 0o755)
        r = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True,
                           env={"PATH": d + ":/usr/bin:/bin"})
    check(r.returncode == 0, f"{label}: the score command fails in sh: {r.stderr}")
    args = r.stdout.split("\n")
    check(args[:2] == ["score", "run"], f"{label}: the score container does not run `score run`: {args}")
    as_of = next((a.split("=", 1)[1] for a in args if a.startswith("--as-of=")), "")
    out = next((a.split("=", 1)[1] for a in args if a.startswith("--out=")), "")
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", as_of), f"{label}: --as-of {as_of!r} is not an hour")
    check(out == "/runs/" + as_of.replace("-", "").replace(":", ""),
          f"{label}: the run directory {out!r} is not named after as_of {as_of!r}")
    check("PITWALL_PII_KEY" not in {e["name"] for e in c.get("env", [])},
          f"{label}: the score job gets the PII key it does not need")
    state = [a.split("=", 1)[1] for a in args if a.startswith("--state=")]
    wanted = values["score"].get("state") or ""
    check(state == ([wanted] if wanted else []),
          f"{label}: the score job's --state {state} is not score.state {wanted!r}")
    check(not wanted or wanted.startswith("s3://"),
          f"{label}: score.state {wanted!r} is not on S3: pods come and go, the state must outlive them")


def check_logs(docs, label, values):
    """Every pitwall container logs as values.logs says: JSON lines for the
    aggregator by default, at the given level."""
    for d in docs:
        spec = d.get("spec", {})
        spec = spec.get("jobTemplate", {}).get("spec", spec)
        for c in spec.get("template", {}).get("spec", {}).get("containers", []):
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            name = f"{label}: {d['kind']}/{d['metadata']['name']}"
            check(env.get("PITWALL_LOG_JSON") == str(values["logs"]["json"]).lower(),
                  f"{name}: PITWALL_LOG_JSON is {env.get('PITWALL_LOG_JSON')!r}, not logs.json")
            check(env.get("PITWALL_LOG") == values["logs"]["level"], f"{name}: PITWALL_LOG is not logs.level")
            check("--log-json" not in c.get("args", []), f"{name}: --log-json as well as PITWALL_LOG_JSON")


def check_monitoring(k, label, values):
    """The PrometheusRule holds files/prometheus-rules.yaml as it is (the
    file promtool tests), and the dashboard ConfigMap the dashboard with the
    sidecar's label."""
    m = values["metrics"]
    rules = k.get("PrometheusRule", [])
    check(len(rules) == (1 if m["prometheusRule"]["enabled"] else 0),
          f"{label}: {len(rules)} PrometheusRules with prometheusRule.enabled {m['prometheusRule']['enabled']}")
    with open(os.path.join(CHART, "files", "prometheus-rules.yaml")) as f:
        want = yaml.safe_load(f)
    for r in rules:
        check(r["spec"] == want, f"{label}: the PrometheusRule differs from files/prometheus-rules.yaml")
    boards = [c for c in k.get("ConfigMap", []) if c["metadata"]["name"].endswith("-dashboard")]
    check(len(boards) == (1 if m["dashboard"]["enabled"] else 0), f"{label}: dashboard ConfigMap vs dashboard.enabled")
    with open(os.path.join(CHART, "files", "grafana-dashboard.json")) as f:
        board = json.load(f)
    for c in boards:
        check(json.loads(c["data"]["pitwall.json"]) == board, f"{label}: the dashboard ConfigMap differs from its file")
        check(c["metadata"]["labels"].get("grafana_dashboard") == "1",
              f"{label}: the dashboard ConfigMap lacks Grafana's sidecar label")


def check_doctor(k, label, values):
    """With doctor.enabled: a pre-install/pre-upgrade hook Job whose
    containers check each dataset and the score with their own flags."""
    jobs = [j for j in k.get("Job", []) if j["metadata"]["name"].endswith("-doctor")]
    if not values["doctor"]["enabled"]:
        check(not jobs, f"{label}: a doctor Job though doctor.enabled is false")
        return
    if not check(len(jobs) == 1, f"{label}: no doctor Job"):
        return
    job = jobs[0]
    hooks = set(job["metadata"]["annotations"].get("helm.sh/hook", "").split(","))
    check(hooks == {"pre-install", "pre-upgrade"}, f"{label}: the doctor is not a pre-install/pre-upgrade hook")
    spec = job["spec"]["template"]["spec"]
    check(spec["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0,
          f"{label}: a failing doctor is retried instead of stopping the release")
    containers = {c["name"]: c for c in spec["containers"]}
    want = {f"ingest-{n}" for n in datasets(values)} if values["ingest"]["enabled"] else set()
    if values["score"]["enabled"]:
        want.add("score")
    check(set(containers) == want, f"{label}: doctor containers {sorted(containers)} are not {sorted(want)}")
    for name, d in (datasets(values).items() if values["ingest"]["enabled"] else []):
        args = containers.get(f"ingest-{name}", {}).get("args", [])
        for flag in ("stream", "leases", "lake"):
            check(f"--{flag}={d[flag]}" in args, f"{label}: the doctor of {name} does not check --{flag}={d[flag]}")
    for c in containers.values():
        check(c["args"][0] == "doctor", f"{label}: doctor container {c['name']} does not run doctor")


def check_notes(binary, files, label, values):
    """NOTES.txt (what helm install prints) renders, and tells how to reach
    each enabled part."""
    cmd = [binary, "-notes"] + [x for f in files for x in ("-f", f)] + [CHART]
    r = subprocess.run(cmd, capture_output=True, text=True)
    notes = r.stdout
    check(r.returncode == 0 and notes.strip(), f"{label}: NOTES.txt does not render: {r.stderr}")
    check("<no value>" not in notes, f"{label}: NOTES.txt shows a missing value")
    for name in datasets(values) if values["ingest"]["enabled"] else []:
        check(f"svc/pitwall-ingest-{name}" in notes, f"{label}: NOTES.txt does not say how to reach ingest-{name}")
    if values["score"]["enabled"]:
        watch = values["score"].get("mode") == "watch"
        want = "svc/pitwall-score-watch" if watch else "create job --from=cronjob/pitwall-score"
        check(want in notes, f"{label}: NOTES.txt does not say how to reach the score {'watcher' if watch else 'job'}")


def refused(binary, values_text, what, *says):
    """Rendering with `values_text` fails with a message containing each of `says`."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as bad:
        bad.write(values_text)
        bad.flush()
        code, err = render(binary, [bad.name], expect_error=True)
    return check(code != 0 and all(x in err for x in says), f"{what} is not refused, naming {says}: {err}")


def check_schema(binary):
    """values.schema.json refuses, naming the key, what helm would otherwise
    render silently: a wrong type, an unknown (misspelt) key, a bad enum."""
    bad_values = {
        "a wrong type": ("ingest:\n  replicas: two\n", "replicas"),
        "an unknown key": ("ingest:\n  rolAge: 1m\n", "rolAge"),
        "an unknown key in a dataset": ("ingest:\n  datasets:\n    logs:\n      steam: x\n", "steam"),
        "an unknown score mode": ("score:\n  mode: daemon\n", "mode"),
        "a duration without a unit": ("score:\n  watch:\n    every: 30\n", "every"),
        "logs.json as a string": ("logs:\n  json: \"yes\"\n", "json"),
    }
    for what, (text, key) in bad_values.items():
        refused(binary, text, f"{what} ({key})", "values don't meet the specifications", key)


def check_dockerfile():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    check(len(froms) >= 2, "Dockerfile: not multi-stage")
    check(all(":" in f.split()[1] and not f.split()[1].endswith(":latest") for f in froms),
          "Dockerfile: a base image is not pinned to a tag")
    final = lines[lines.index(froms[-1]):]
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    check(users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]) is not None,
          "Dockerfile: the runtime stage does not run as a numeric non-root user")
    check(any(ln.startswith("COPY --from=") for ln in final), "Dockerfile: the runtime stage does not copy the build")
    check(any("cargo build --release --locked --bin pitwall" in ln for ln in lines),
          "Dockerfile: the binary is not built with --locked")
    check(any(ln.startswith("ENTRYPOINT") and "pitwall" in ln for ln in final), "Dockerfile: no pitwall entrypoint")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--render", required=True, help="the deploy/helm/render binary")
    a = ap.parse_args()
    with open(os.path.join(CHART, "values.yaml")) as f:
        defaults = yaml.safe_load(f)
    scenarios = [("defaults", [])] + [
        (os.path.basename(p), [p]) for p in sorted(glob.glob(os.path.join(CHART, "ci", "*-values.yaml")))]
    for label, files in scenarios:
        values = defaults
        for p in files:
            with open(p) as f:
                values = merge(values, yaml.safe_load(f))
        docs = render(a.render, files)
        validate(docs, label)
        k = by_kind(docs)
        if values["ingest"]["enabled"]:
            check_ingest(k, label, values)
        if values["score"]["enabled"] and values["score"].get("mode", "cronjob") == "watch":
            check_watch(k, label, values)
        elif values["score"]["enabled"]:
            check_score(k, label, values)
        check_logs(docs, label, values)
        check_monitoring(k, label, values)
        check_doctor(k, label, values)
        check_notes(a.render, files, label, values)
        print(f"{label}: {len(docs)} objects: " + ", ".join(sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)))
    refused(a.render, "ingest:\n  terminationGracePeriodSeconds: 20\n", "a grace period shorter than a flush",
            "terminationGracePeriodSeconds")
    check_schema(a.render)
    refused(a.render, "doctor:\n  enabled: true\n",
            "a doctor hook with a service account the chart has not created yet", "service account that already does")
    check_dockerfile()
    if failures:
        print("\n".join(["FAILED:"] + failures), file=sys.stderr)
        sys.exit(1)
    print("chart, manifests and Dockerfile: all checks passed")


def merge(base, over):
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


if __name__ == "__main__":
    main()
