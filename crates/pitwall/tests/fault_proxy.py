"""A fault-injecting HTTP proxy in front of moto, for the ingestion's fault
tests: faults no server produces on demand, on real connections.

    python3 fault_proxy.py --upstream http://127.0.0.1:5055 [--rate 0.2] [--dynamodb-rate R]
        [--throttle-first N]
        [--s3 500,503,slowdown,reset,slow] [--dynamodb throttle,slow] [--seed 1]

prints `listening on PORT` once ready. Each request to S3 (anything that is
not a DynamoDB call) or to DynamoDB (an `X-Amz-Target: DynamoDB_…` header)
is answered with one of its service's faults with probability `rate`, else
forwarded as is. `GET /_faults` answers the counts of faults injected by
kind and of requests forwarded, as JSON, and `upstream_down`: calls the
emulator itself failed (moto has been seen to exit mid-run), which make a
run an environment failure, not a result.

`POST /_faults/config` with a JSON object changes the settings while it
runs (`rate`, `dynamodb_rate`, `s3`, `dynamodb`, `stall`, `hang`, `slow`, each optional), so a
test can turn a fault on at the moment its scenario needs it.

Faults: 500 (InternalError), 503 (ServiceUnavailable), slowdown (503
SlowDown), reset (the connection closed after half the response body, or
half-way through reading a request body), slow (forwarded after `--slow`
seconds, 1.5 by default, whether or not its client still waits: a PUT whose
body had reached the server before its client gave up),
stall (a request with a body, such as a PUT, held `--stall` seconds as in a
congested network: it reaches the emulator only if its client is still
waiting then, `s3_stall_landed`, else it is dropped, `s3_stall_abandoned`);
hang (forwarded, then the answer held `--hang` seconds, past the clients'
timeouts: the call took effect but its caller never hears so); after500
(forwarded, then answered 500 InternalError: the call took effect but its
caller hears it failed, which S3 documents for writes) and after500_create
(the same, for the first create-if-absent PUT of each path only,
`If-None-Match: *`; its retry and other calls pass); reset_once (the first
GET of each path cut half-way through its answer; its retry passes);
DynamoDB:
throttle (400 ProvisionedThroughputExceededException), slow, hang, and
hang_renewal (a hang of lease renewals only; other calls pass).

`retries` counts requests that repeat one answered with a fault (same
method, path and body): the clients' own retries, as the server sees them.
"""
import argparse
import hashlib
import http.client
import json
import random
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LOCK = threading.Lock()
COUNTS = {"forwarded": 0, "retries": 0}
FAULTED = set()  # requests answered with a fault, until they are sent again
CREATED = set()  # (method, path) seen by the faults that strike once: after500_create, reset_once
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


def count(kind):
    with LOCK:
        COUNTS[kind] = COUNTS.get(kind, 0) + 1


def seen_again(identity, faulted):
    """Counts a retry when this request repeats a faulted one; remembers it
    when it is being faulted now."""
    with LOCK:
        if identity in FAULTED:
            FAULTED.discard(identity)
            COUNTS["retries"] += 1
        if faulted:
            FAULTED.add(identity)


def first_time(request):
    """Whether (method, path) is asked for the first time (a retry is not)."""
    with LOCK:
        if request in CREATED:
            return False
        CREATED.add(request)
        return True


def client_gone(sock):
    """Whether the client closed its connection (it stopped waiting)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def configure(body):
    new = json.loads(body or b"{}")
    with LOCK:
        for key in ("rate", "dynamodb_rate", "stall", "hang", "slow"):
            if key in new:
                setattr(ARGS, key, new[key])
        for key in ("s3", "dynamodb"):
            if key in new:
                setattr(ARGS, key, [k for k in new[key].split(",") if k])


def s3_error(code, status, message):
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>").encode()
    return status, "application/xml", body


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, status, ctype, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def reset(self):
        # SO_LINGER 0: close with a TCP RST, as a broken middlebox would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.connection.close()
        self.close_connection = True

    def handle_any(self):
        if self.command == "GET" and self.path == "/_faults":
            with LOCK:
                out = json.dumps(COUNTS).encode()
            return self.reply(200, "application/json", out)
        if self.command == "POST" and self.path == "/_faults/config":
            configure(self.body())
            return self.reply(200, "application/json", b"{}")
        dynamodb = (self.headers.get("X-Amz-Target") or "").startswith("DynamoDB_")
        kinds = ARGS.dynamodb if dynamodb else ARGS.s3
        rate = ARGS.dynamodb_rate if dynamodb and ARGS.dynamodb_rate is not None else ARGS.rate
        if dynamodb:
            with LOCK:
                COUNTS["dynamodb_calls"] = COUNTS.get("dynamodb_calls", 0) + 1
                first = COUNTS["dynamodb_calls"] <= ARGS.throttle_first
            if first:
                rate = 1.0
        fault = RNG.choice(kinds) if kinds and RNG.random() < rate else None
        if fault == "reset_once":
            fault = "reset" if self.command == "GET" and first_time(("GET", self.path)) else None
        if fault == "after500_create":
            create = self.command == "PUT" and self.headers.get("If-None-Match") == "*"
            fault = "after500" if create and first_time(("PUT", self.path)) else None
        if fault == "stall" and self.headers.get("Content-Length") in (None, "0"):
            fault = None  # only a request with a body can stall on its way
        if self.command == "HEAD" and fault not in (None, "slow"):
            fault = "503"  # a HEAD answer has no body to cut or explain
        # A client retrying a PUT cut mid-body sends it whole: identify it by
        # its path alone then, which a cut body cannot tell apart anyway.
        if fault == "reset" and self.headers.get("Content-Length") not in (None, "0"):
            half = int(self.headers["Content-Length"]) // 2
            self.rfile.read(half)
            count("s3_reset")
            seen_again((self.command, self.path, None), True)
            return self.reset()
        data = self.body()
        service = "dynamodb" if dynamodb else "s3"
        if fault == "hang_renewal":
            # Only a lease renewal reports throughput: the call whose late
            # answer, once retried, looks like a lease lost.
            fault = "hang" if b"throughputBytesPerSec" in data else None
            if fault:
                count("dynamodb_hang_renewal")
        seen_again((self.command, self.path, None), False)
        seen_again((self.command, self.path, hashlib.sha1(data).hexdigest()),
                   fault not in (None, "slow", "stall", "hang"))
        if fault == "after500":
            count(f"{service}_after500")
            return self.forward(data, cut=False, answer=s3_error("InternalError", 500, "injected after the call"))
        if fault in ("500", "503", "slowdown"):
            count(f"{service}_{fault}")
            code = {"500": ("InternalError", 500), "503": ("ServiceUnavailable", 503),
                    "slowdown": ("SlowDown", 503)}[fault]
            return self.reply(*s3_error(code[0], code[1], "injected by fault_proxy"))
        if fault == "throttle":
            count("dynamodb_throttle")
            body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                               "message": "injected by fault_proxy"}).encode()
            return self.reply(400, "application/x-amz-json-1.0", body)
        if fault == "slow":
            count(f"{service}_slow")
            time.sleep(ARGS.slow)
        if fault == "stall":
            count(f"{service}_stall")
            time.sleep(ARGS.stall)
            if client_gone(self.connection):
                count(f"{service}_stall_abandoned")
                self.close_connection = True
                return
            count(f"{service}_stall_landed")
        if fault == "hang":
            count(f"{service}_hang")
        self.forward(data, cut=(fault == "reset"), hang=(fault == "hang"))

    def forward(self, data, cut, hang=False, answer=None):
        up = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        try:
            up.request(self.command, self.path, body=data, headers=headers)
            res = up.getresponse()
            body = res.read()
        except OSError as e:
            # The emulator itself is gone or broken: an environment failure,
            # counted apart from the faults we inject.
            count("upstream_down")
            return self.reply(502, "text/plain", f"upstream unreachable: {e}".encode())
        finally:
            up.close()
        count("forwarded")
        if answer:
            return self.reply(*answer)
        if hang:
            time.sleep(ARGS.hang)
        self.send_response(res.status)
        head = self.command == "HEAD"
        for k, v in res.getheaders():
            if k.lower() not in HOP and (head or k.lower() != "content-length"):
                self.send_header(k, v)
        if not head:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        if cut and len(body) > 1:
            count("s3_reset")
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            return self.reset()
        self.wfile.write(body)

    def handle_quietly(self):
        try:
            self.handle_any()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up first (a held answer, a timeout): expected.
            count("client_gone")
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_quietly


def main():
    global ARGS, RNG, UPSTREAM
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.2)
    p.add_argument("--dynamodb-rate", type=float, default=None)
    p.add_argument("--throttle-first", type=int, default=0,
                   help="fault every one of the first N DynamoDB calls")
    p.add_argument("--s3", default="500,503,slowdown,reset,slow")
    p.add_argument("--dynamodb", default="throttle,slow")
    p.add_argument("--slow", type=float, default=1.5,
                   help="seconds a slow request is held before it is forwarded")
    p.add_argument("--stall", type=float, default=20.0,
                   help="seconds a stalled request is held")
    p.add_argument("--hang", type=float, default=35.0,
                   help="seconds a hung answer is held (object_store gives up after 30)")
    p.add_argument("--seed", type=int, default=1)
    ARGS = p.parse_args()
    ARGS.s3 = [k for k in ARGS.s3.split(",") if k]
    ARGS.dynamodb = [k for k in ARGS.dynamodb.split(",") if k]
    RNG = random.Random(ARGS.seed)
    UPSTREAM = urlsplit(ARGS.upstream)
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Proxy)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
