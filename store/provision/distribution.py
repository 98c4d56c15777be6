"""Fetch and unpack an Elasticsearch distribution into the cache directory.

Sources, in order: an already unpacked copy in the cache; the integ-test zip from the local
Maven repository or, through ``mvn``, from Maven Central (a runnable server without a bundled
JDK and without some modules: no scripts, no reindex); the official archive from Elastic's
download site, checked against its published SHA-512.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Final

from store.provision.errors import DistributionUnavailableError

ES_VERSION: Final = os.environ.get("AUTOTAG_ES_VERSION", "9.5.0")
MAVEN_GROUP: Final = "org.elasticsearch.distribution.integ-test-zip"
MAVEN_ARTIFACT: Final = "elasticsearch"
OFFICIAL_URL: Final = (
    "https://artifacts.elastic.co/downloads/elasticsearch/elasticsearch-{v}-linux-x86_64.tar.gz"
)


def _maven_zip_in_local_repo(version: str) -> Path:
    repo = Path(os.environ.get("MAVEN_REPO", Path.home() / ".m2" / "repository"))
    return (
        repo.joinpath(*MAVEN_GROUP.split("."))
        / MAVEN_ARTIFACT
        / version
        / f"{MAVEN_ARTIFACT}-{version}.zip"
    )


def _fetch_with_maven(version: str, into: Path) -> Path | None:
    local = _maven_zip_in_local_repo(version)
    if local.exists():
        return local
    mvn = shutil.which("mvn")
    if mvn is None:
        return None
    artifact = f"{MAVEN_GROUP}:{MAVEN_ARTIFACT}:{version}:zip"
    # -C: fail on checksum mismatch instead of warning.
    command = [
        mvn,
        "-B",
        "-q",
        "-C",
        "dependency:copy",
        f"-Dartifact={artifact}",
        f"-DoutputDirectory={into}",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    copied = into / f"{MAVEN_ARTIFACT}-{version}.zip"
    if completed.returncode != 0 or not copied.exists():
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-3:]
        raise DistributionUnavailableError(
            f"Maven could not fetch {artifact}: {' / '.join(tail)}",
            "check that Maven Central is reachable (or set AUTOTAG_ES_VERSION to a version "
            "that exists there), or point ES_URL at a running Elasticsearch",
        )
    return copied


def _download_official(version: str, into: Path) -> Path:
    url = OFFICIAL_URL.format(v=version)
    archive = into / url.rsplit("/", 1)[1]
    try:
        with urllib.request.urlopen(url + ".sha512", timeout=30) as response:
            expected = response.read().decode().split()[0]
        digest = hashlib.sha512()
        with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
    except OSError as error:
        raise DistributionUnavailableError(
            f"neither Maven nor a download of {url} worked ({error})",
            "install Maven (`apt-get install maven`) so the distribution comes from Maven "
            "Central, or put the archive in the local Maven repository, or point ES_URL at a "
            "running Elasticsearch",
        ) from error
    if digest.hexdigest() != expected:
        archive.unlink()
        raise DistributionUnavailableError(
            f"checksum mismatch for {url}", "retry; if it persists, report it"
        )
    return archive


def _unzip_keeping_modes(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            target = Path(bundle.extract(info, into))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)
            elif target.is_file():
                target.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)


def ensure_distribution(cache_dir: Path, version: str = ES_VERSION) -> Path:
    """The home folder of an unpacked Elasticsearch ``version`` under ``cache_dir``."""
    home = cache_dir / "elasticsearch" / f"elasticsearch-{version}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home.parent) as scratch:
        work = Path(scratch)
        archive = _fetch_with_maven(version, work) or _download_official(version, work)
        unpacked = work / "unpacked"
        if archive.suffix == ".zip":
            _unzip_keeping_modes(archive, unpacked)
        else:
            with tarfile.open(archive) as bundle:
                bundle.extractall(unpacked, filter="tar")
        (top,) = list(unpacked.iterdir())
        for path in [top, *top.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        # Atomic: a half-unpacked distribution never sits at ``home``.
        top.rename(home)
    return home
