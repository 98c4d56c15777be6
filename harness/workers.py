"""``autotag worker`` processes for tests and benchmarks: started, stopped, killed like a user's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent


def worker_env(
    es_url: str, index: str, runs_index: str, cache: Path, **settings: Any
) -> dict[str, str]:
    """The environment of a worker process: the cluster, the indexes, and ``AUTOTAG_<NAME>``
    for each of ``settings`` (``run_lease_s=4`` -> ``AUTOTAG_RUN_LEASE_S=4``)."""
    env = {
        **os.environ,
        "AUTOTAG_ES_URL": es_url,
        "AUTOTAG_INDEX": index,
        "AUTOTAG_RUNS_INDEX": runs_index,
        "AUTOTAG_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("ES_URL", None)
    env.update({f"AUTOTAG_{name.upper()}": str(value) for name, value in settings.items()})
    return env


@dataclass
class WorkerProcess:
    """One ``autotag worker`` child; its stderr goes to ``log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    _out: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """``kill -9``: no handler runs, nothing is given back."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, as ``autotag up`` stops its worker; SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()
        return int(self.process.returncode)

    def wait(self, timeout_s: float) -> int:
        code = self.process.wait(timeout_s)
        self._out.close()
        return int(code)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def backoffs(self) -> int:
        """The back-offs the worker reported when it exited."""
        found = re.findall(r"(\d+) back-offs", self.output())
        return int(found[-1]) if found else 0


def start_worker(name: str, env: dict[str, str], logs: Path, *args: str) -> WorkerProcess:
    """``python -m cli.main worker --name NAME ARGS...`` with ``env``."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    out = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--name", name, *args],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    return WorkerProcess(name, process, log, out)
