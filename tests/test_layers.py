"""The import arrows of README's "Where things live", checked on the source: api never imports
the indexer, export sits on search and store only, the worker on the indexer and store, search
reads nothing of store but its field names, and no layer below cli imports api (harness and
bench drive it as clients do) but the Python client, which reads the API's request and response
models only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = (
    "api",
    "autotags",
    "cli",
    "client",
    "embeddings",
    "evaluation",
    "export",
    "harness",
    "indexer",
    "search",
    "store",
    "bench",
    "tests",
    "worker",
)


def _imports(package: str) -> dict[str, set[str]]:
    """Module path -> the modules of ours it imports (anywhere in the file)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = {n for n in names if n.split(".")[0] in OURS}
    return found


ALLOWED = {
    "search": ("search", "store.schema"),
    "store": ("store",),
    "export": ("export", "search", "store"),
    "evaluation": ("evaluation", "search", "store"),
    "embeddings": ("embeddings", "store"),
    "autotags": ("autotags", "search", "store"),
    "indexer": ("indexer", "embeddings", "store"),
    "worker": ("worker", "indexer", "store"),
    "api": ("api", "search", "store", "embeddings", "autotags", "export", "evaluation"),
    # The client speaks in the API's own models (so it cannot drift from the schema), raises
    # the language's QueryError, and never reaches the app, the store or the cluster.
    "client": (
        "client",
        "api.models",
        "api.run_models",
        "api.autotag_models",
        "evaluation.report",
        "search",
    ),
}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_arrows(package: str) -> None:
    allowed = ALLOWED[package]
    for module, names in _imports(package).items():
        for name in names:
            assert any(name == a or name.startswith(a + ".") for a in allowed), (module, name)


def test_only_cli_and_the_test_and_bench_harness_import_api() -> None:
    for package in (
        "search",
        "store",
        "embeddings",
        "autotags",
        "export",
        "evaluation",
        "indexer",
        "worker",
    ):
        for module, names in _imports(package).items():
            assert not [n for n in names if n.split(".")[0] == "api"], module
