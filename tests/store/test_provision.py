"""Local Elasticsearch provisioning: clear failures, and a real 3-node cluster."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from store.provision import LocalCluster, distribution, free_port, java
from store.provision.cluster import port_is_free, process_alive
from store.provision.java import JavaRuntime


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_no_java_21_is_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = Path("/opt/old-java")
    monkeypatch.setattr(java, "_candidate_homes", lambda: [old])
    monkeypatch.setattr(java, "inspect_java", lambda home: JavaRuntime(home, 17, False))
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path))
    monkeypatch.setattr(distribution, "ensure_distribution", lambda *a, **k: tmp_path)
    port = free_port()
    code, output = _run_cli(
        [
            "es",
            "start",
            "--name",
            "nojava",
            "--http-port",
            str(port),
            "--transport-port",
            str(free_port()),
        ],
        capsys,
    )
    assert code == 2
    assert "needs Java 21 or newer" in output
    assert "/opt/old-java (Java 17)" in output
    assert "how to fix: install a full JDK 21+" in output
    assert "Traceback" not in output


def test_no_maven_and_no_download_is_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MAVEN_REPO", str(tmp_path / "empty-m2"))
    monkeypatch.setattr(distribution.shutil, "which", lambda name: None)
    monkeypatch.setattr(distribution, "OFFICIAL_URL", "http://127.0.0.1:9/es-{v}.tar.gz")
    code, output = _run_cli(
        [
            "es",
            "start",
            "--name",
            "nomaven",
            "--http-port",
            str(free_port()),
            "--transport-port",
            str(free_port()),
        ],
        capsys,
    )
    assert code == 2
    assert "neither Maven nor a download" in output
    assert "apt-get install maven" in output
    assert "Traceback" not in output


def test_a_taken_port_is_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        code, output = _run_cli(
            [
                "es",
                "start",
                "--name",
                "busy",
                "--http-port",
                str(port),
                "--transport-port",
                str(free_port()),
            ],
            capsys,
        )
    assert code == 2
    assert f"HTTP port {port} on 127.0.0.1 is already in use" in output
    assert "ES_URL" in output


def test_status_of_a_cluster_never_started(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path))
    monkeypatch.delenv("ES_URL", raising=False)
    code, output = _run_cli(
        ["es", "status", "--name", "never", "--http-port", str(free_port())], capsys
    )
    assert code == 1
    assert "not answering" in output


@pytest.fixture
def three_nodes() -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        name=f"autotag-3n-{free_port()}",
        nodes=3,
        http_port=free_port(),
        transport_port=free_port(),
        heap="256m",
    )
    # Consecutive ports from a random base: make sure all of them are free.
    while not all(port_is_free(p) for p in cluster.http_ports() + cluster.transport_ports()):
        cluster.http_port, cluster.transport_port = free_port(), free_port()
    yield cluster
    cluster.destroy()


@pytest.mark.slow
def test_three_node_cluster_starts_reports_three_nodes_and_stops_cleanly(
    three_nodes: LocalCluster,
) -> None:
    status = three_nodes.start()
    assert status.healthy
    assert status.health is not None
    assert status.health["number_of_nodes"] == 3
    pids = [node.pid for node in status.nodes]
    assert all(pids)
    # The recorded cluster can be found again by name (as `autotag es status` does).
    again = LocalCluster.load(three_nodes.name, three_nodes.cache_dir)
    assert again is not None
    assert again.status().health is not None
    three_nodes.stop()
    # Gone, or at most a zombie waiting for init to reap it.
    assert not any(process_alive(pid) for pid in pids if pid)
    assert not three_nodes.status().healthy
