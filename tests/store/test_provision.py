"""Local Elasticsearch provisioning: verified downloads, clear failures, real clusters."""

from __future__ import annotations

import hashlib
import shutil
import socket
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from store.provision import LocalCluster, cluster, distribution, free_port, java
from store.provision.cluster import port_is_free, process_alive
from store.provision.errors import DistributionUnavailableError, DistributionVerificationError
from store.provision.java import JavaRuntime
from store.settings import DEFAULT_ES_VERSION, StoreSettings


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_no_java_21_is_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = Path("/opt/old-java")
    monkeypatch.setattr(java, "_candidate_homes", lambda explicit: [old])
    monkeypatch.setattr(java, "inspect_java", lambda home: JavaRuntime(home, 17, False))
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path))
    fetched: list[object] = []
    # The name the cluster module calls: Java is checked before anything is downloaded.
    monkeypatch.setattr(cluster, "ensure_distribution", lambda *a, **k: fetched.append(a))
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
    assert fetched == []


def test_no_maven_is_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MAVEN_REPO", str(tmp_path / "empty-m2"))
    monkeypatch.setattr("store.provision.distribution.shutil.which", lambda name: None)
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
    assert "Maven is not installed" in output
    assert "apt-get install maven" in output
    assert "Traceback" not in output
    assert not (
        tmp_path / "cache" / "elasticsearch" / f"elasticsearch-{DEFAULT_ES_VERSION}"
    ).exists()


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


# --- integrity ----------------------------------------------------------------------------


def _local_repo_zip(repo: Path, version: str) -> Path:
    path = distribution._zip_in_local_repo(repo, version)
    path.parent.mkdir(parents=True)
    return path


def _nothing_unpacked(cache: Path) -> bool:
    folder = cache / "elasticsearch"
    return not folder.exists() or list(folder.iterdir()) == []


def test_a_tampered_archive_is_refused_and_nothing_is_unpacked(tmp_path: Path) -> None:
    repo, cache = tmp_path / "m2", tmp_path / "cache"
    archive = _local_repo_zip(repo, DEFAULT_ES_VERSION)
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("elasticsearch-9.5.0/bin/elasticsearch", "#!/bin/sh\necho not elastic\n")
    with pytest.raises(DistributionVerificationError) as refused:
        distribution.ensure_distribution(cache, DEFAULT_ES_VERSION, maven_repo=repo)
    assert "is not the Elasticsearch 9.5.0 distribution autotag knows" in refused.value.message
    assert f"delete {archive}" in refused.value.fix
    assert _nothing_unpacked(cache)


def test_an_archive_failing_its_crc_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, cache = tmp_path / "m2", tmp_path / "cache"
    archive = _local_repo_zip(repo, "0.0.1")
    payload = b"elasticsearch " * 1000
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as bundle:
        bundle.writestr("es-0.0.1/bin/elasticsearch", payload)
    data = bytearray(archive.read_bytes())
    at = data.index(payload) + 10
    data[at] ^= 0xFF  # one flipped byte in the stored file: its CRC no longer matches
    archive.write_bytes(bytes(data))
    # Pinned to the damaged file's own digest, so only the CRC check can catch it.
    digest = hashlib.sha512(bytes(data)).hexdigest()
    monkeypatch.setitem(distribution.PINNED_SHA512, "0.0.1", digest)
    with pytest.raises(DistributionVerificationError, match="fails its CRC check"):
        distribution.ensure_distribution(cache, "0.0.1", maven_repo=repo)
    assert _nothing_unpacked(cache)


def test_an_unknown_version_is_refused_before_any_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*args: object) -> Path:
        raise AssertionError("an unpinned version must not be fetched")

    monkeypatch.setattr(distribution, "_fetch_with_maven", no_download)
    with pytest.raises(DistributionUnavailableError) as refused:
        distribution.ensure_distribution(tmp_path, "9.9.9", maven_repo=tmp_path / "m2")
    assert "Elasticsearch 9.9.9 has no pinned SHA-512" in refused.value.message
    assert "9.5.0" in refused.value.message
    assert "AUTOTAG_ES_VERSION" in refused.value.fix


def test_every_pinned_digest_is_a_sha512() -> None:
    for version, digest in distribution.PINNED_SHA512.items():
        assert len(digest) == 128, version
        int(digest, 16)


@pytest.mark.slow
def test_a_node_provisions_from_nothing_with_the_real_download() -> None:
    """An empty Maven repository and an empty cache: mvn fetches the zip, autotag checks it
    against the pinned SHA-512, unpacks it and starts a node that answers health."""
    # Not under pytest's tmp_path: as root the node's unprivileged user must enter the folder.
    scratch = Path(tempfile.mkdtemp(prefix="autotag-fresh-"))
    scratch.chmod(0o755)
    settings = StoreSettings(cache=scratch / "cache", maven_repo=scratch / "m2")
    node = LocalCluster(
        name="fresh",
        http_port=free_port(),
        transport_port=free_port(),
        heap="512m",
        cache_dir=settings.cache_dir(),
        maven_repo=settings.maven_repo,
        service_user=settings.es_user,
        java_home=settings.es_java_home,
    )
    try:
        status = node.start()
        assert status.healthy
        fetched = distribution._zip_in_local_repo(scratch / "m2", DEFAULT_ES_VERSION)
        assert fetched.exists()  # it came through Maven, into the empty repository
        assert distribution.sha512_of(fetched) == distribution.PINNED_SHA512[DEFAULT_ES_VERSION]
        with urllib.request.urlopen(f"{node.url}/_cluster/health", timeout=10) as answer:
            assert answer.status == 200
    finally:
        node.destroy()
        shutil.rmtree(scratch, ignore_errors=True)
