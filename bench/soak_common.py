"""What the fault soaks share (bench/ingest_soak.py, bench/score_soak.py):
the services, the fault proxy in front of moto, and the rule that an
emulator which stopped answering makes a run an environment failure, never
a result.
"""
import http.client
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import boto3

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROXY = ROOT / "crates/pitwall/tests/fault_proxy.py"
S3_FAULTS = "500,503,slowdown,reset,slow,stall,hang"
DYNAMODB_FAULTS = "throttle,slow,hang"
# Kubernetes' default terminationGracePeriodSeconds is 30; past twice that a
# TERM drain is a fault of the process, not a slow environment.
TERM_GRACE = 60


class EnvironmentFailure(Exception):
    pass


def log(msg, who="soak"):
    print(f"[{who} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def services(needs=("AWS_ENDPOINT_URL",)):
    """The services' environment; starts them when the variables in `needs`
    are not all set. Returns whether they were started here (and must be
    stopped)."""
    if all(os.environ.get(k) for k in needs):
        return False
    out = subprocess.run([str(ROOT / "scripts/services.sh"), "start"], check=True,
                         capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            os.environ[k] = v
    return True


def stop_services():
    subprocess.run([str(ROOT / "scripts/services.sh"), "stop"], stdout=subprocess.DEVNULL)


def client(service, endpoint=None):
    return boto3.client(service, region_name=os.environ.get("AWS_REGION", "us-east-1"),
                        endpoint_url=endpoint)


def start_proxy(s3_rate, dynamodb_rate, seed, stall=8, hang=35, s3_faults=S3_FAULTS):
    """The fault proxy in front of moto; returns (process, port)."""
    proxy = subprocess.Popen([sys.executable, str(PROXY), "--upstream", os.environ["AWS_ENDPOINT_URL"],
                              "--rate", str(s3_rate), "--dynamodb-rate", str(dynamodb_rate),
                              "--s3", s3_faults, "--dynamodb", DYNAMODB_FAULTS,
                              "--stall", str(stall), "--hang", str(hang), "--seed", str(seed)],
                             stdout=subprocess.PIPE, text=True)
    return proxy, int(proxy.stdout.readline().split()[-1])


def proxy_get(port, path="/_faults"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    return json.loads(c.getresponse().read())


def proxy_post(port, settings):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/_faults/config", body=json.dumps(settings))
    c.getresponse().read()


def check_environment(proxy_port):
    """The proxy's counts; an environment failure once moto failed calls."""
    faults = proxy_get(proxy_port)
    if faults.get("upstream_down", 0):
        raise EnvironmentFailure(f"moto stopped answering: {faults['upstream_down']} calls failed upstream")
    return faults


def fault_figures(faults):
    """The proxy's counts as a soak prints them."""
    return {
        "faults": {k: v for k, v in sorted(faults.items())
                   if k not in ("forwarded", "retries", "dynamodb_calls", "upstream_down")},
        "requests_forwarded": faults.get("forwarded", 0),
        "retries": faults.get("retries", 0),
    }


def leaks(logs, secrets):
    """Log files under `logs` that contain any of `secrets`."""
    return sorted(f.name for f in pathlib.Path(logs).glob("*.log")
                  if any(x in f.read_text(errors="replace") for x in secrets))


def default_pitwall():
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return os.path.join(target, "release", "pitwall")


def run(a, prefix, needs, soak, ok, report):
    """A soak's main once its arguments are read: the services (started if
    `needs` are not all set), a work folder, the soak, and its verdict
    printed (JSON with --json) and made the exit status: 0 passed, 1 not,
    2 an environment failure."""
    started = services(needs)
    work = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    try:
        v = soak(a, work)
    except EnvironmentFailure as e:
        v = {"environment_failure": str(e)}
    finally:
        if started:
            stop_services()
    if "environment_failure" in v:
        print(f"ENVIRONMENT FAILURE, not a result: {v['environment_failure']} (logs in {work})", file=sys.stderr)
        if a.json:
            print(json.dumps(v))
        sys.exit(2)
    v["passed"] = ok(v)
    v["logs"] = str(work)
    # Kept with the logs: the emulators' data is gone once they restart.
    (work / "verdict.json").write_text(json.dumps(v, default=str, indent=1))
    if a.json:
        print(json.dumps(v, default=str))
    else:
        report(v)
        print("PASS" if v["passed"] else f"FAIL (logs in {work})")
    sys.exit(0 if v["passed"] else 1)
