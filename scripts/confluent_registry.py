"""A small Confluent Schema Registry REST emulator for the tests.

No Confluent-compatible registry can be installed from this machine's
registries (Confluent's is on Maven/Docker, Karapace left PyPI), so the tests
speak to this one over real HTTP. It follows the documented REST API for what
pitwall and confluent-kafka's client use: /config, /subjects/…/versions,
lookup, /schemas/ids/… (and …/versions), error codes 40401/40402/40403/40408, global ids shared
by identical schemas, and optional basic auth. Like most emulators it does NOT
enforce compatibility: pitwall checks before it registers.

    python3 scripts/confluent_registry.py [--port N] [--user USER:PASSWORD]

prints `listening on PORT` once ready.
"""
import argparse
import base64
import json
import sys
import threading
from urllib.parse import unquote
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LEVELS = {"NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD",
          "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.global_level = "BACKWARD"
        self.levels = {}      # subject -> level
        self.subjects = {}    # subject -> [schema id per version]
        self.schemas = []     # id - 1 -> schema text
        self.canonical = {}   # canonical text -> id

    def schema_id(self, text):
        key = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        if key not in self.canonical:
            self.schemas.append(text)
            self.canonical[key] = len(self.schemas)
        return self.canonical[key]


STATE = State()
AUTH = None


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def version_body(subject, version, sid):
    return {"subject": subject, "version": version, "id": sid,
            "schema": STATE.schemas[sid - 1]}


def versions_of(subject):
    if subject not in STATE.subjects:
        raise ApiError(404, 40401, f"Subject '{subject}' not found.")
    return STATE.subjects[subject]


def route(method, path, body):
    parts = [unquote(p) for p in path.split("/") if p]
    match (method, parts):
        case ("GET", ["config"]):
            return {"compatibilityLevel": STATE.global_level}
        case ("PUT", ["config"]):
            STATE.global_level = level(body)
            return {"compatibility": STATE.global_level}
        case ("GET", ["config", subject]):
            if subject not in STATE.levels:
                raise ApiError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")
            return {"compatibilityLevel": STATE.levels[subject]}
        case ("PUT", ["config", subject]):
            STATE.levels[subject] = level(body)
            return {"compatibility": STATE.levels[subject]}
        case ("GET", ["subjects"]):
            return sorted(STATE.subjects)
        case ("GET", ["subjects", subject, "versions"]):
            return list(range(1, len(versions_of(subject)) + 1))
        case ("GET", ["subjects", subject, "versions", v]):
            ids = versions_of(subject)
            n = len(ids) if v == "latest" else int(v) if v.isdigit() else 0
            if not 1 <= n <= len(ids):
                raise ApiError(404, 40402, f"Version {v} not found.")
            return version_body(subject, n, ids[n - 1])
        case ("POST", ["subjects", subject, "versions"]):
            sid = STATE.schema_id(schema_text(body))
            ids = STATE.subjects.setdefault(subject, [])
            if sid not in ids:
                ids.append(sid)
            return {"id": sid}
        case ("POST", ["subjects", subject]):
            ids = versions_of(subject)
            sid = STATE.schema_id(schema_text(body))
            if sid not in ids:
                raise ApiError(404, 40403, "Schema not found")
            return version_body(subject, ids.index(sid) + 1, sid)
        case ("GET", ["schemas", "ids", sid]) if sid.isdigit() and 1 <= int(sid) <= len(STATE.schemas):
            return {"schema": STATE.schemas[int(sid) - 1]}
        case ("GET", ["schemas", "ids", sid]):
            raise ApiError(404, 40403, f"Schema {sid} not found")
        case ("GET", ["schemas", "ids", sid, "versions"]) if sid.isdigit():
            return [{"subject": subject, "version": ids.index(int(sid)) + 1}
                    for subject, ids in sorted(STATE.subjects.items()) if int(sid) in ids]
    raise ApiError(404, 404, f"no route {method} {path}")


def level(body):
    lv = body.get("compatibility")
    if lv not in LEVELS:
        raise ApiError(422, 42203, f"Invalid compatibility level {lv!r}")
    return lv


def schema_text(body):
    if body.get("schemaType", "AVRO") != "AVRO":
        raise ApiError(422, 42201, "only AVRO schemas are emulated")
    text = body.get("schema")
    try:
        json.loads(text)
    except (TypeError, ValueError):
        raise ApiError(422, 42201, "Invalid schema")
    return text


class Handler(BaseHTTPRequestHandler):
    def handle_any(self, method):
        try:
            if AUTH and self.headers.get("Authorization") != AUTH:
                raise ApiError(401, 401, "Unauthorized")
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n)) if n else {}
            with STATE.lock:
                status, out = 200, route(method, self.path.split("?")[0], body)
        except ApiError as e:
            status, out = e.status, {"error_code": e.code, "message": e.message}
        except (ValueError, KeyError) as e:
            status, out = 400, {"error_code": 400, "message": str(e)}
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def log_message(self, *args):
        pass


def main():
    global AUTH
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user", help="USER:PASSWORD required as basic auth")
    a = ap.parse_args()
    if a.user:
        AUTH = "Basic " + base64.b64encode(a.user.encode()).decode()
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
