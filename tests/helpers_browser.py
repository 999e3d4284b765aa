"""A headless Chromium driven over the DevTools protocol through a pipe (--remote-debugging-pipe:
JSON messages ending in NUL on file descriptors 3 and 4), so no port and no extra package."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
         "--mute-audio", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--remote-debugging-pipe")


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    return explicit or next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class Chromium:
    """One browser process; ``send`` calls a DevTools method, ``events`` collects the rest."""

    def __init__(self, binary: str, user_data_dir: Path, timeout: float = 30.0):
        self.timeout = timeout
        to_browser_read, self._write_fd = os.pipe()
        self._read_fd, from_browser_write = os.pipe()

        def wire_pipes():  # runs in the child before exec: the protocol wants fds 3 and 4
            inbound, outbound = os.dup(to_browser_read), os.dup(from_browser_write)
            os.dup2(inbound, 3)
            os.dup2(outbound, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=wire_pipes, close_fds=False)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._inbox: queue.Queue = queue.Queue()
        self._stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._read_messages, daemon=True)
        self._reader.start()
        threading.Thread(target=lambda: self._stderr.extend(self.process.stderr), daemon=True).start()

    def _read_messages(self) -> None:
        buffer = b""
        while chunk := os.read(self._read_fd, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._inbox.put(json.loads(message))
        self._inbox.put(None)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        reply = self._pump(lambda: self._replies.pop(self._next_id, None))
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str | None = None, since: int = 0) -> dict:
        """The first ``method`` event of ``session`` among events from position ``since`` on."""
        return self._pump(lambda: next((e for e in self.events[since:] if e["method"] == method
                                        and e.get("sessionId") == session), None))

    def _pump(self, done):
        deadline = time.monotonic() + self.timeout
        while (found := done()) is None:
            try:
                message = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no answer from Chromium in {self.timeout}s") from None
            if message is None:
                raise RuntimeError(f"Chromium exited: {self.stderr()[-2000:]}")
            if "id" in message:
                self._replies[message["id"]] = message
            else:
                self.events.append(message)
        return found

    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write_fd)
        self._reader.join(timeout=5)
        if not self._reader.is_alive():
            os.close(self._read_fd)
