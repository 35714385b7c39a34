"""Headless Chromium driven over the DevTools protocol on a pipe: loads the
viewer's page, reads what it shows, clicks it, collects its console errors
and takes screenshots.  Used by ``view --screenshot``, the browser test and
the render benchmark.

``--remote-debugging-pipe`` makes Chromium read protocol messages (JSON, each
ended by a NUL byte) on its file descriptor 3 and write them on 4: no port,
no websocket client, nothing listening on the network.
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
from typing import Any, Dict, List, Optional, Union

__all__ = ["Browser", "BrowserError", "find_chromium", "CHROMIUM_NAMES"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """Chromium could not be started, did not answer, or reported an error."""


def find_chromium() -> Optional[str]:
    """The Chromium executable: ``$MEMPOOL_CHROMIUM``, else the first of
    :data:`CHROMIUM_NAMES` on PATH; None when there is none."""
    env = os.environ.get("MEMPOOL_CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page.  Use as a context manager::

        with Browser() as b:
            b.open("file:///tmp/page.html")
            b.eval("document.title")
            b.screenshot("page.png")
    """

    def __init__(self, executable: Optional[str] = None, width: int = 1400, height: int = 1000,
                 timeout: float = 60.0) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError("no Chromium found (apt-get install chromium, or set "
                               "MEMPOOL_CHROMIUM to its path)")
        self.timeout = timeout
        self.width, self.height = width, height
        self.events: List[Dict[str, Any]] = []
        self._next_id = 0
        self._buf = b""
        self._profile = tempfile.TemporaryDirectory(prefix="mempool-chromium-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--hide-scrollbars", "about:blank"]
        self._stderr = open(Path(self._profile.name) / "stderr.log", "wb")
        # bash puts the pipe ends on 3 and 4, where Chromium expects them
        # (dash, Debian's sh, takes no file descriptor above 9)
        script = f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w}'
        try:
            self.proc = subprocess.Popen([shutil.which("bash") or "/bin/bash", "-c", script,
                                          *args], env=env,
                                         pass_fds=(to_child_r, from_child_w),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=self._stderr)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.session: Optional[str] = None
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
            self.session = self.call("Target.attachToTarget",
                                     {"targetId": target["targetId"], "flatten": True},
                                     session=False)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable")
            self.resize(width, height)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ protocol --
    def _send(self, msg: Dict[str, Any]) -> None:
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self._w, data)
            data = data[n:]

    def _read(self, deadline: float) -> Dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer within {self.timeout:.0f} s")
            ready, _, _ = select.select([self._r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                self.proc.poll()
                err = (Path(self._profile.name) / "stderr.log").read_text(errors="replace")[-2000:]
                raise BrowserError(f"Chromium closed its pipe (exit {self.proc.poll()}): {err}")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: Optional[Dict[str, Any]] = None,
             session: bool = True) -> Dict[str, Any]:
        """Send one protocol command and return its result (BrowserError on
        an error answer); events that arrive meanwhile go to ``events``."""
        self._next_id += 1
        msg: Dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self._send(msg)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The next event ``method`` (one already received counts)."""
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read(deadline)
            if reply.get("method") == method:
                return reply
            if "method" in reply:
                self.events.append(reply)

    # ------------------------------------------------------------- actions --
    def resize(self, width: int, height: int) -> None:
        """Set the viewport (CSS pixels, device scale 1)."""
        self.width, self.height = width, height
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def open(self, url_or_path: Union[str, Path], wait_for: str = "document.body && "
             "document.body.dataset.rendered === '1'") -> float:
        """Load a page (a path or a URL) and wait until ``wait_for`` is true;
        return the seconds from navigation to then."""
        url = str(url_or_path)
        if "://" not in url:
            url = Path(url).resolve().as_uri()
        t0 = time.monotonic()
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")
        self.wait_until(wait_for)
        return time.monotonic() - t0

    def wait_until(self, expression: str, timeout: Optional[float] = None) -> None:
        """Poll ``expression`` in the page until it is true."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eval(f"!!({expression})"):
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression}")
            time.sleep(0.02)

    def eval(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page; its value (JSON-able)."""
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True})
        if "exceptionDetails" in res:
            detail = res["exceptionDetails"]
            text = detail.get("exception", {}).get("description") or detail.get("text")
            raise BrowserError(f"{expression[:80]}: {text}")
        return res.get("result", {}).get("value")

    def mouse(self, kind: str, x: float, y: float, buttons: int = 0) -> None:
        """One mouse event at viewport (x, y): kind is mouseMoved,
        mousePressed or mouseReleased."""
        params: Dict[str, Any] = {"type": kind, "x": x, "y": y, "buttons": buttons}
        if kind in ("mousePressed", "mouseReleased"):
            params.update(button="left", clickCount=1)
        self.call("Input.dispatchMouseEvent", params)

    def click(self, x: float, y: float) -> None:
        """Move to (x, y), press and release the left button."""
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, 1)
        self.mouse("mouseReleased", x, y)

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 5) -> None:
        """Press at (x0, y0), move to (x1, y1), release."""
        self.mouse("mouseMoved", x0, y0)
        self.mouse("mousePressed", x0, y0, 1)
        for i in range(1, steps + 1):
            self.mouse("mouseMoved", x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps, 1)
        self.mouse("mouseReleased", x1, y1)

    def errors(self) -> List[str]:
        """Uncaught exceptions, console.error calls and error log entries
        the page produced so far."""
        out = []
        for ev in self.events:
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", "")))
                                    for a in p.get("args", [])))
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    def screenshot(self, path: Union[str, Path], full_page: bool = True,
                   clip: Optional[Dict[str, float]] = None) -> Path:
        """Write a PNG of the page (the whole page by default)."""
        params: Dict[str, Any] = {"format": "png"}
        if clip is not None:
            params["clip"] = {"scale": 1, **clip}
            params["captureBeyondViewport"] = True
        elif full_page:
            height = int(self.eval("Math.ceil(document.documentElement.scrollHeight)"))
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close Chromium (killed if it does not exit within 10 s)."""
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            try:
                self.call("Browser.close", session=False)
            except (BrowserError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (getattr(self, "_r", None), getattr(self, "_w", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._r = self._w = None
        self._stderr.close()
        self._profile.cleanup()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

