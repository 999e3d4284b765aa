"""A real Ray cluster on this machine for the tests: a head and worker nodes as separate processes.

Each node is one ``ray start --block`` process on a loopback address with its own temp dir and
explicit ports, so it neither meets another Ray instance on the machine nor listens beyond
loopback for its own services. Token authentication is off for the nodes and for this process
while the cluster runs, whatever ~/.ray holds. Stopping a node's ``ray start`` process stops exactly the
processes it started (no machine-wide ``ray stop``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AUTH_MODE = "RAY_AUTH_MODE"
NODE_IP = "127.0.0.2"  # loopback; Ray would swap 127.0.0.1 for the machine's public address
RAY = Path(sys.executable).with_name("ray")
TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalCluster:
    """``with LocalCluster(cpus=(1, 1)) as cluster:`` a head with 1 CPU and one worker with 1."""

    def __init__(self, cpus: tuple[int, ...] = (1, 1), object_store_mb: int = 100):
        self.cpus = cpus
        self.object_store = object_store_mb * 1024 * 1024
        self.root = Path(tempfile.mkdtemp(prefix="vlray-"))  # short: Ray's sockets live here
        self.port = free_port()
        self.address = f"{NODE_IP}:{self.port}"
        self.client_port = free_port()
        self.client_address = f"ray://{NODE_IP}:{self.client_port}"  # Ray client mode
        self.nodes: list[subprocess.Popen] = []
        self.logs: list = []
        self.saved_auth_mode = os.environ.get(AUTH_MODE)

    def __enter__(self) -> "LocalCluster":
        os.environ[AUTH_MODE] = "disabled"  # the drivers this process starts must match the nodes
        try:
            for index, cpus in enumerate(self.cpus):
                self.nodes.append(self._start_node(index, cpus))
            self.wait_for_nodes(len(self.cpus))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start_node(self, index: int, cpus: int) -> subprocess.Popen:
        head = index == 0
        command = [str(RAY), "start", "--block", "--node-ip-address", NODE_IP,
                   "--num-cpus", str(cpus), "--num-gpus", "0", "--temp-dir", str(self.root),
                   "--object-store-memory", str(self.object_store), "--disable-usage-stats",
                   "--include-log-monitor", "false",
                   "--dashboard-agent-listen-port", str(free_port()),
                   "--dashboard-agent-grpc-port", str(free_port()),
                   "--metrics-export-port", str(free_port()),
                   "--runtime-env-agent-port", str(free_port())]
        if head:
            command += ["--head", "--port", str(self.port), "--include-dashboard", "false",
                        "--dashboard-port", str(free_port()),
                        "--ray-client-server-port", str(self.client_port)]
        else:
            command += ["--address", self.address]
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
                   PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
        log = open(self.root / f"node-{index}.log", "wb")
        self.logs.append(log)
        node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        if head:
            self._wait_for_port()
        return node

    def _wait_for_port(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nodes and self.nodes[0].poll() is not None:
                break
            with socket.socket() as sock:
                if sock.connect_ex((NODE_IP, self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the Ray head did not come up: {self.log(0)}")

    def wait_for_nodes(self, count: int, timeout: float = 180) -> None:
        """Block until ``count`` nodes are alive (asks the cluster from a short-lived driver)."""
        import ray

        ray.init(address=self.address, log_to_driver=False, logging_level="WARNING")
        try:
            deadline = time.monotonic() + timeout
            while sum(node["Alive"] for node in ray.nodes()) < count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {ray.nodes()} of {count} Ray nodes came up")
                time.sleep(0.5)
        finally:
            ray.shutdown()

    def log(self, index: int) -> str:
        path = self.root / f"node-{index}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        for node in reversed(self.nodes):  # workers first, the head last
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        self.nodes.clear()
        for log in self.logs:
            log.close()
        if self.saved_auth_mode is None:
            os.environ.pop(AUTH_MODE, None)
        else:
            os.environ[AUTH_MODE] = self.saved_auth_mode
        shutil.rmtree(self.root, ignore_errors=True)


class BlockingImage:
    """An image that blocks its reader: a FIFO at the image's path. ``kill_reader`` kills the
    process stuck reading it, after putting the real image back for whoever reads it next."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.saved = self.path.read_bytes()
        self.path.unlink()
        os.mkfifo(self.path)

    def kill_reader(self, timeout: float = 180) -> int:
        writer = self._wait_for_reader(timeout)
        try:
            pid = self._reader_pid()
            self.path.unlink()
            self.path.write_bytes(self.saved)
            os.kill(pid, signal.SIGKILL)
            return pid
        finally:
            os.close(writer)

    def _wait_for_reader(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:  # succeeds only once a reader waits at the other end
                return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nobody opened {self.path}")

    def _reader_pid(self, timeout: float = 30) -> int:
        """The process holding the FIFO open (its open() may take a moment to return)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for fd_dir in Path("/proc").glob("[0-9]*/fd"):
                if int(fd_dir.parent.name) == os.getpid():
                    continue
                try:
                    if any(os.readlink(fd) == str(self.path) for fd in fd_dir.iterdir()):
                        return int(fd_dir.parent.name)
                except OSError:  # a process that ended or is not ours to inspect
                    continue
            time.sleep(0.05)
        raise RuntimeError(f"no process holds {self.path} open")
