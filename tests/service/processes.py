"""Real service processes for the operational tests: ``ldensf serve`` on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ldensf.ports import free_port
from service.client import Client


class ServiceProcess:
    """``ldensf serve`` in a subprocess (one worker unless told), ready when ``start`` returns."""

    def __init__(
        self,
        model_dir: Path,
        log: Path,
        redis_url: str | None = None,
        prefix: str | None = None,
        workers: int = 1,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {**os.environ, "LDENSF_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
        if prefix:
            self.env["LDENSF_REDIS_PREFIX"] = prefix
        self.command = [sys.executable, "-m", "ldensf.cli", "serve", "--port", str(self.port)]
        self.command += ["--model-dir", str(model_dir), "--workers", str(workers), "--log-level", "warning"]
        if redis_url:
            self.command += ["--redis-url", redis_url]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> ServiceProcess:
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=handle, stderr=subprocess.STDOUT
            )
        deadline = time.time() + timeout
        with Client(self.url) as client:
            while not client.ready():
                if self.process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the service did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.2)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crashed or evicted replica: no shutdown handlers run."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
