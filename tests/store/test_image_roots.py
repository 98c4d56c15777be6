"""Image roots recorded on the index: merged, folded, kept under concurrent recording."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from store import image_roots
from store.image_roots import (
    folders_of_images,
    is_inside,
    normalise_roots,
    record_image_roots,
    roots_in_answer,
    roots_index_name,
    roots_search_body,
)


def test_nested_folders_fold_into_the_outer_one(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "ab").mkdir()
    got = normalise_roots([tmp_path / "a" / "b", tmp_path / "a", tmp_path / "ab"])
    # "ab" is not inside "a": prefixes count only at a separator.
    assert got == [str(tmp_path / "a"), str(tmp_path / "ab")]


def test_symlinked_folders_are_recorded_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert normalise_roots([tmp_path / "link"]) == [str(tmp_path / "real")]


def test_a_manifest_records_the_folders_of_its_images(tmp_path: Path) -> None:
    paths = [tmp_path / "x" / "1.png", tmp_path / "x" / "2.png", tmp_path / "y" / "z" / "3.png"]
    assert folders_of_images(paths) == [str(tmp_path / "x"), str(tmp_path / "y" / "z")]


def test_too_many_folders_fold_into_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_roots, "MAX_ROOTS", 3)
    folders = [f"/data/{a}/{b}" for a in "pq" for b in "abc"]
    assert normalise_roots(folders) == ["/data/p", "/data/q"]


def test_is_inside_is_by_path_component() -> None:
    assert is_inside("/srv/img/a.png", "/srv/img")
    assert is_inside("/srv/img", "/srv/img")
    assert not is_inside("/srv/images/a.png", "/srv/img")
    assert not is_inside("/etc/passwd", "/srv/img")
    assert is_inside("/anything", "/")


def recorded(es: Elasticsearch, index: str) -> list[str]:
    return roots_in_answer(es.search(index=roots_index_name(index), body=roots_search_body()).body)


@pytest.mark.es
def test_recording_is_idempotent_and_folds_nested_folders(
    es: Elasticsearch, item_index: str, tmp_path: Path
) -> None:
    assert record_image_roots(es, item_index, [tmp_path / "one" / "inner"]) == [
        str(tmp_path / "one" / "inner")
    ]
    now = record_image_roots(es, item_index, [tmp_path / "two", tmp_path / "one"])
    assert now == [str(tmp_path / "one"), str(tmp_path / "two")]
    assert record_image_roots(es, item_index, [tmp_path / "two"]) == now
    assert recorded(es, item_index) == now
    # The item index itself is untouched: no stray documents, no mapping change.
    assert es.count(index=item_index)["count"] == 0


@pytest.mark.es
def test_concurrent_recordings_lose_no_folder(
    es: Elasticsearch, item_index: str, tmp_path: Path
) -> None:
    folders = [tmp_path / f"f{n:02d}" for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda folder: record_image_roots(es, item_index, [folder]), folders))
    assert recorded(es, item_index) == sorted(str(folder) for folder in folders)
