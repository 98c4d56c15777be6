"""Fetch, verify and unpack an Elasticsearch distribution into the cache directory.

The distribution is the integ-test zip on Maven Central
(``org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip``): a runnable
server without a bundled JDK and without some modules (no scripts, no reindex). It is taken from
an already unpacked copy in the cache, else from the local Maven repository, else fetched with
``mvn dependency:copy``.

Integrity does not depend on the repository: every version autotag can provision has its
SHA-512 pinned in :data:`PINNED_SHA512`, and every archive is checked against it (and its zip
CRCs tested) before anything is unpacked. Checksums the repository serves are checked by Maven
as usual (warn-only: some mirrors serve none); they are an extra, never the only check.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Final

from store.provision.errors import DistributionUnavailableError, DistributionVerificationError
from store.settings import DEFAULT_ES_VERSION

MAVEN_GROUP: Final = "org.elasticsearch.distribution.integ-test-zip"
MAVEN_ARTIFACT: Final = "elasticsearch"

# SHA-512 of each provisionable version's zip, as fetched from Maven Central and checked to run
# the whole test suite. A new version is added here, with its digest, before it can be used.
PINNED_SHA512: Final[dict[str, str]] = {
    "9.5.0": (
        "c06bd4ef7691da91052cada7bb255b2d7c48a1422820a8db0e3e3a1ed0dde4e8"
        "d380cdbadeb7029cc56167b9ad3a6d89f6b8edbc48d4b8685d1ab24a7ab17dd5"
    ),
}


def maven_coordinates(version: str) -> str:
    return f"{MAVEN_GROUP}:{MAVEN_ARTIFACT}:{version}:zip"


def default_maven_repo() -> Path:
    return Path.home() / ".m2" / "repository"


def pinned_sha512(version: str) -> str:
    """The pinned digest of ``version``, or a clear error for a version autotag does not know."""
    try:
        return PINNED_SHA512[version]
    except KeyError:
        known = ", ".join(sorted(PINNED_SHA512))
        raise DistributionUnavailableError(
            f"Elasticsearch {version} has no pinned SHA-512, so its download cannot be "
            f"verified (versions autotag can provision: {known})",
            f"unset AUTOTAG_ES_VERSION to use {DEFAULT_ES_VERSION}, or add the version and the "
            "SHA-512 of its zip to PINNED_SHA512 in store/provision/distribution.py, or point "
            "AUTOTAG_ES_URL at a running Elasticsearch",
        ) from None


def _zip_in_local_repo(repo: Path, version: str) -> Path:
    return (
        repo.joinpath(*MAVEN_GROUP.split("."))
        / MAVEN_ARTIFACT
        / version
        / f"{MAVEN_ARTIFACT}-{version}.zip"
    )


def _fetch_with_maven(version: str, into: Path, maven_repo: Path | None) -> Path:
    mvn = shutil.which("mvn")
    artifact = maven_coordinates(version)
    if mvn is None:
        raise DistributionUnavailableError(
            f"Maven is not installed, and Elasticsearch {version} is neither in the cache nor in "
            "the local Maven repository",
            "install Maven (`apt-get install maven`; `scripts/dev` does this as root), or put "
            f"{artifact} into the local Maven repository (MAVEN_REPO), or point "
            "AUTOTAG_ES_URL at a running Elasticsearch",
        )
    # No -C: some repositories serve this artifact without checksum files, and Maven's strict
    # mode then refuses it. The pinned SHA-512 below is the check that counts.
    command = [
        mvn,
        "-B",
        "-q",
        "dependency:copy",
        f"-Dartifact={artifact}",
        f"-DoutputDirectory={into}",
    ]
    if maven_repo is not None:
        command.append(f"-Dmaven.repo.local={maven_repo}")
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    copied = into / f"{MAVEN_ARTIFACT}-{version}.zip"
    if completed.returncode != 0 or not copied.exists():
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-3:]
        raise DistributionUnavailableError(
            f"Maven could not fetch {artifact}: {' / '.join(tail) or 'no output'}",
            "check that Maven Central is reachable (`mvn -B dependency:get "
            f"-Dartifact={artifact}`), or point AUTOTAG_ES_URL at a running Elasticsearch",
        )
    return copied


def sha512_of(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_archive(archive: Path, version: str) -> None:
    """Refuse ``archive`` unless it is the pinned zip of ``version`` and every entry's CRC holds."""
    expected = pinned_sha512(version)
    actual = sha512_of(archive)
    if actual != expected:
        raise DistributionVerificationError(
            f"{archive} is not the Elasticsearch {version} distribution autotag knows: its "
            f"SHA-512 is {actual[:16]}..., expected {expected[:16]}...",
            f"delete {archive} (a damaged or replaced download) and run again; if a fresh "
            "download fails too, the repository serves a different file: do not use it",
        )
    try:
        with zipfile.ZipFile(archive) as bundle:
            broken = bundle.testzip()
    except zipfile.BadZipFile as error:
        raise DistributionVerificationError(
            f"{archive} is not a readable zip ({error})", f"delete {archive} and run again"
        ) from error
    if broken is not None:
        raise DistributionVerificationError(
            f"{archive} fails its CRC check at {broken}", f"delete {archive} and run again"
        )


def _unzip_keeping_modes(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            target = Path(bundle.extract(info, into))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)
            elif target.is_file():
                target.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)


def ensure_distribution(
    cache_dir: Path, version: str = DEFAULT_ES_VERSION, *, maven_repo: Path | None = None
) -> Path:
    """The home folder of a verified, unpacked Elasticsearch ``version`` under ``cache_dir``."""
    home = cache_dir / "elasticsearch" / f"elasticsearch-{version}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    pinned_sha512(version)  # an unknown version fails before anything is fetched
    home.parent.mkdir(parents=True, exist_ok=True)
    # Everything happens in a scratch folder next to ``home`` and is renamed into place at the
    # end: a failed check or a crash leaves nothing half-unpacked behind.
    with tempfile.TemporaryDirectory(dir=home.parent, prefix=".unpacking-") as scratch:
        work = Path(scratch)
        local = _zip_in_local_repo(maven_repo or default_maven_repo(), version)
        archive = local if local.exists() else _fetch_with_maven(version, work, maven_repo)
        verify_archive(archive, version)
        unpacked = work / "unpacked"
        _unzip_keeping_modes(archive, unpacked)
        (top,) = list(unpacked.iterdir())
        for path in [top, *top.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        top.rename(home)
    return home
