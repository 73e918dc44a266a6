"""Drive a real headless Chromium over the DevTools protocol (pipe transport).

No third-party client: Chromium's ``--remote-debugging-pipe`` reads NUL-terminated
JSON commands on fd 3 and writes responses and events on fd 4. Used by the report
test to load a page, collect console errors and exceptions, check that every image
decoded, and take a full-page screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    def __init__(self, exe: str):
        self._cmd_r, self._cmd_w = os.pipe()
        self._res_r, self._res_w = os.pipe()
        self._profile = tempfile.mkdtemp(prefix="dtitool-chromium-")
        shell = f'exec "$@" 3<&{self._cmd_r} 4>&{self._res_w}'
        self.proc = subprocess.Popen(
            ["bash", "-c", shell, "bash", exe, *FLAGS,
             f"--user-data-dir={self._profile}"],
            pass_fds=(self._cmd_r, self._res_w), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(self._cmd_r)
        os.close(self._res_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._res_r], [], [], left)
            if ready:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, *,
             session: str | None = None, timeout: float = 30) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = self._read_message(deadline)
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._res_r)
        shutil.rmtree(self._profile, ignore_errors=True)


_INSPECT_JS = """(() => {
  const vw = document.documentElement.clientWidth;
  const describe = (el) => el.tagName.toLowerCase() + (el.className ?
      '.' + String(el.className).trim().split(/\\s+/).join('.') : '') + ' "' +
      (el.textContent || '').trim().slice(0, 40) + '"';
  const inScroller = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const ox = getComputedStyle(p).overflowX;
      if (ox === 'auto' || ox === 'scroll') return true;
    }
    return false;
  };
  const overflow = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if ((r.right > vw + 1 || r.left < -1) && !inScroller(el)) {
      overflow.push('outside the page: ' + describe(el));
    }
    const cs = getComputedStyle(el);
    if ((cs.overflowX === 'hidden' || cs.overflowX === 'clip') &&
        el.scrollWidth > el.clientWidth + 1) {
      overflow.push('clipped: ' + describe(el));
    }
  }
  return {title: document.title,
          scroll_width: document.documentElement.scrollWidth,
          images: Array.from(document.images).map(
              i => [i.complete, i.naturalWidth, i.naturalHeight]),
          alts: Array.from(document.images).map(i => i.alt),
          overflow: overflow};
})()"""


def render_page(exe: str, page: Path, screenshot: Path, *, width: int = 1280,
                height: int = 900) -> dict:
    """Load ``page`` in headless Chromium; return what a reader would have seen.

    Returns a dict with ``errors`` (console errors, uncaught exceptions, failed
    loads), ``images`` (per ``<img>``: complete, naturalWidth, naturalHeight),
    ``alts`` (each image's alt text), ``overflow`` (elements that stick out of
    the viewport without being inside a horizontally scrollable box, and boxes
    that hide overflowing content), ``title``, ``scroll_width`` and
    ``screenshot`` (path of the full-page PNG).
    """
    pipe = _Pipe(exe)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})
        sess = pipe.send("Target.attachToTarget",
                         {"targetId": target["targetId"], "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            pipe.send(f"{domain}.enable", session=sess)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1,
                   "mobile": False}, session=sess)
        pipe.send("Page.navigate", {"url": page.resolve().as_uri()}, session=sess)
        pipe.wait_event("Page.loadEventFired", timeout=60)
        expr = "JSON.stringify(" + _INSPECT_JS + ")"
        res = pipe.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                        session=sess)
        info = json.loads(res["result"]["value"])
        metrics = pipe.send("Page.getLayoutMetrics", session=sess)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = pipe.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": size["height"],
                     "scale": 1}}, session=sess, timeout=60)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = []
        for ev in pipe.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                errors.append(p["exceptionDetails"].get("text", "exception"))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error",
                                                                       "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                       for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                errors.append(p["entry"].get("text", "log error"))
        info.update(errors=errors, screenshot=screenshot)
        return info
    finally:
        pipe.close()
