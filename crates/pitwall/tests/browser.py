"""Loads a page in headless Chromium over the DevTools protocol and reports
what a person would see: waits until a JavaScript condition holds, evaluates
an expression, saves a screenshot, and lists every console error, uncaught
exception and failed request on the way.

    browser.py URL --until JS --eval JS --screenshot PNG [--timeout S]

Prints one JSON object: {"ok", "value", "errors", "waited_s"}.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import websocket  # websocket-client


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium: install Debian's `chromium` (scripts/test.sh does)")


class Page:
    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=30)
        self.next_id = 0
        self.errors = []

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.event(msg)

    def event(self, msg):
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.errors.append(f"console.{p['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append("uncaught: " + d.get("exception", {}).get("description", d.get("text", "")))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log: {e.get('text')} {e.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            self.errors.append(f"request failed: {p.get('errorText')}")

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluating {expr!r}: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")


def devtools_port(profile, proc, deadline):
    path = os.path.join(profile, "DevToolsActivePort")
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"chromium exited with {proc.returncode}")
        if os.path.exists(path):
            with open(path) as f:
                lines = f.read().split()
            if len(lines) >= 2:
                return lines[0], lines[1]
        time.sleep(0.05)
    sys.exit("chromium did not open its DevTools port")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--until", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--timeout", type=float, default=45)
    a = ap.parse_args()
    profile = tempfile.mkdtemp(prefix="pitwall-chromium-")
    proc = subprocess.Popen(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "--window-size=1280,1600", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.time()
    deadline = started + a.timeout
    try:
        port, browser_path = devtools_port(profile, proc, deadline)
        browser = websocket.create_connection(f"ws://127.0.0.1:{port}{browser_path}", timeout=30)
        browser.send(json.dumps({"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}}))
        target = None
        while target is None:
            msg = json.loads(browser.recv())
            if msg.get("id") == 1:
                target = msg["result"]["targetId"]
        page = Page(f"ws://127.0.0.1:{port}/devtools/page/{target}")
        for domain in ("Runtime", "Log", "Network", "Page"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=a.url)
        ok = False
        while time.time() < deadline:
            try:
                ok = bool(page.evaluate(a.until))
            except RuntimeError:
                ok = False
            if ok:
                break
            time.sleep(0.25)
        value = page.evaluate(a.eval)
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(a.screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        # Events that arrived after the last call.
        page.ws.settimeout(0.5)
        try:
            while True:
                page.event(json.loads(page.ws.recv()))
        except (websocket.WebSocketTimeoutException, TimeoutError):
            pass
        print(json.dumps({"ok": ok, "value": value, "errors": page.errors,
                          "waited_s": round(time.time() - started, 1)}))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
