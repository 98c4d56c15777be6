"""``autotag slices`` against the real node: the API's checks, without a server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from cli.main import main
from store.slices import slices_index

pytestmark = pytest.mark.es


@pytest.fixture
def index(
    monkeypatch: pytest.MonkeyPatch, es: Elasticsearch, es_url: str, item_index: str
) -> Iterator[str]:
    monkeypatch.delenv("ES_URL", raising=False)
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_INDEX", item_index)
    yield item_index
    es.indices.delete(index=slices_index(item_index), ignore_unavailable=True)


def test_put_list_rename_delete(index: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slices", "put", "cars", "object_prefix:car"]) == 0
    assert main(["slices", "put", "sure", "slice = cars AND score >= 0.8"]) == 0
    assert "saved sure: object_prefix:car AND score >= 0.8" in capsys.readouterr().out

    assert main(["slices", "put", "typo", "slice = cars AND scor > 1"]) == 1
    err = capsys.readouterr().err
    assert "unknown field `scor`" in err
    assert "                   ^^^^" in err  # the caret under `scor`

    assert main(["slices", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "cars: object_prefix:car  (used by sure)",
        "sure: slice = cars AND score >= 0.8",
    ]

    assert main(["slices", "delete", "cars"]) == 1
    err = capsys.readouterr().err
    assert "The slice `cars` is used by `sure`" in err
    assert "--force" in err

    assert main(["slices", "rename", "cars", "autos", "--update-dependants"]) == 0
    assert "rewritten to use autos: sure" in capsys.readouterr().out
    assert main(["slices", "show", "sure"]) == 0
    assert "query: slice = autos AND score >= 0.8" in capsys.readouterr().out

    assert main(["slices", "delete", "autos", "--force"]) == 0
    assert "no longer resolve: sure" in capsys.readouterr().err
    assert main(["slices", "list"]) == 0
    assert "sure: slice = autos AND score >= 0.8  [does not resolve]" in capsys.readouterr().out


def test_bad_names_are_refused_before_connecting(
    index: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["slices", "put", ".hidden", "dataset = a"]) == 2
    assert main(["slices", "show", "a b"]) == 2
    assert "is not a slice name" in capsys.readouterr().err
