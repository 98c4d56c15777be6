"""compose.yaml is a valid Compose file (checked against the Compose Specification's own JSON
schema, vendored in tests/compose/, since tests have no network), and says what we ship:
Elasticsearch at our version, the API, one worker, and a Prometheus scraping ``/metrics`` with
the scrape job docs/operations.md shows."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from api.metrics import PATH as METRICS_PATH
from store.settings import DEFAULT_ES_VERSION

ROOT = Path(__file__).resolve().parent.parent
VENDORED = ROOT / "tests" / "compose"
SCHEMA: dict[str, Any] = orjson.loads((VENDORED / "compose-spec.json").read_bytes())
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def errors_of(document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in VALIDATOR.iter_errors(document)
    ]


def test_the_vendored_schema_is_the_one_its_readme_names() -> None:
    digest = hashlib.sha256((VENDORED / "compose-spec.json").read_bytes()).hexdigest()
    assert f"sha256 `{digest}`" in (VENDORED / "README.md").read_text()
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["title"] == "Compose Specification"


def test_compose_yaml_is_valid() -> None:
    assert errors_of(COMPOSE) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "api", "imagee"), "autotag:local"),
        (("services", "worker", "depends_on", "api", "condition"), "service_good"),
        (("services", "elasticsearch", "ports"), "9200:9200"),
        (("volumes", "esdata"), {"driver": 7}),
    ],
)
def test_the_validator_refuses_a_broken_file(path: tuple[str, ...], value: Any) -> None:
    broken = copy.deepcopy(COMPOSE)
    node = broken
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    assert errors_of(broken)


def test_what_it_brings_up() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"elasticsearch", "api", "worker", "prometheus"}
    assert services["elasticsearch"]["image"] == (
        f"docker.elastic.co/elasticsearch/elasticsearch:{DEFAULT_ES_VERSION}"
    )
    assert services["worker"]["command"] == ["autotag", "worker"]
    for name in ("api", "worker"):
        assert services[name]["environment"]["ES_URL"] == "http://elasticsearch:9200"
        assert services[name]["build"] == "."
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:")


def _scrape_config_in_docs() -> str:
    docs = (ROOT / "docs" / "operations.md").read_text()
    section = docs[docs.index("## Metrics") :]
    found = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert found, "docs/operations.md shows no scrape config"
    return found.group(1)


def test_prometheus_scrapes_the_metrics_as_the_docs_say() -> None:
    content = COMPOSE["configs"]["prometheus"]["content"]
    assert content == _scrape_config_in_docs()
    (job,) = yaml.safe_load(content)["scrape_configs"]
    assert job["metrics_path"] == METRICS_PATH
    assert job["static_configs"] == [{"targets": ["api:8000"]}]
