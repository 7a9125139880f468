"""A proxy in front of kinesalite that expires shard iterators: every Nth
GetRecords call is answered with Kinesis's
ExpiredIteratorException instead (kinesalite only expires them after five
minutes). Everything else is forwarded unchanged.

    kinesis_expiring_proxy.py UPSTREAM_URL EVERY_N

Prints the port it listens on, then serves until killed; on SIGTERM it
prints how many calls it expired.
"""

import http.client
import http.server
import signal
import sys
import threading
import urllib.parse

upstream = urllib.parse.urlparse(sys.argv[1])
every = int(sys.argv[2])
lock = threading.Lock()
calls = 0
expired = 0


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        global calls, expired
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        if target.endswith(".GetRecords"):
            with lock:
                calls += 1
                expire = calls % every == 0
                if expire:
                    expired += 1
            if expire:
                self.reply(400, b'{"__type":"ExpiredIteratorException","message":"Iterator expired"}',
                           {"Content-Type": "application/x-amz-json-1.1",
                            "x-amzn-ErrorType": "ExpiredIteratorException"})
                return
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request("POST", self.path, body=body, headers=headers)
        res = conn.getresponse()
        data = res.read()
        self.reply(res.status, data, {k: v for k, v in res.getheaders()
                                      if k.lower() not in ("content-length", "connection", "transfer-encoding")})
        conn.close()

    def reply(self, status, data, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(server.server_address[1], flush=True)


def stop(*_):
    print(f"expired {expired} of {calls} GetRecords calls", flush=True)
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, stop)
server.serve_forever()
