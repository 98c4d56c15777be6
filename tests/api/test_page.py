"""The review page in a real Chromium, against the real app, a real node and real images.

Every test checks that no request left the server, that the page raised no script error and
that its Content-Security-Policy was never violated. Screenshots of the search and item views
are saved under the folder printed at the start (``AUTOTAG_TEST_ARTIFACTS``, default
``.artifacts/browser`` in the repository).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import pytest
from elasticsearch import Elasticsearch
from PIL import Image
from playwright.sync_api import Browser, Page, Route
from pydantic import SecretStr

from api.app import create_app
from api.routes.page import PAGE_CSP
from api.settings import Settings
from harness.browser import NoBrowser, chromium, served
from harness.review_world import (
    SHIFTED_SET,
    TRAINING_SET,
    TRUTH_SOURCE,
    XSS_ITEM,
    XSS_LABEL,
    add_evaluation,
    make_world,
    write_images,
)
from store.image_roots import roots_index_name
from store.mapping import index_settings, item_mapping

pytestmark = pytest.mark.es

KEY = "page-review-key"
OTHER_KEY = "second-tab-key"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def artifacts(request: pytest.FixtureRequest) -> Path:
    folder = Path(os.environ.get("AUTOTAG_TEST_ARTIFACTS", ROOT / ".artifacts" / "browser"))
    folder.mkdir(parents=True, exist_ok=True)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n[browser] screenshots and timings go to {folder}", flush=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module-wide, not session-wide: Playwright's sync API holds an event loop in this thread
    # while it runs, which the async (anyio) tests of other modules must not meet.
    try:
        with chromium() as launched:
            yield launched
    except NoBrowser as error:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests need Chromium: {error}")
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(es: Elasticsearch, images: Path) -> Iterator[str]:
    index = f"test-page-{uuid.uuid4().hex[:12]}"
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    make_world(es, index, images)
    yield index
    es.indices.delete(index=index, ignore_unavailable=True)
    es.indices.delete(index=roots_index_name(index), ignore_unavailable=True)


def _settings(es_url: str, index: str, cache: Path, **extra: Any) -> Settings:
    return Settings(
        es_url=es_url,
        index=index,
        cache=cache,
        review_api_keys=SecretStr(f"alice:{KEY},bob:{OTHER_KEY}"),
        review_refresh="true",
        **extra,
    )


@pytest.fixture
def server(es_url: str, world: str, tmp_path: Path) -> Iterator[str]:
    with served(create_app(_settings(es_url, world, tmp_path / "cache"))) as url:
        yield url


@dataclass
class Watch:
    """What a page did that it should not: requests elsewhere, errors, CSP violations."""

    origin: str
    elsewhere: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def check(self, *, blocked: tuple[str, ...] = ()) -> None:
        """Nothing went wrong, but for CSP refusals naming ``blocked`` (which must occur)."""
        assert self.elsewhere == [], self.elsewhere
        expected = [e for e in self.errors if any(b in e for b in blocked)]
        assert [e for e in self.errors if e not in expected] == []
        for name in blocked:
            assert any(name in e for e in expected), f"{name} was not blocked: {self.errors}"
        assert self.dialogs == [], self.dialogs


def watch(page: Page, origin: str) -> Watch:
    seen = Watch(origin)

    page.on("pageerror", lambda e: seen.errors.append(f"page error: {e}"))
    page.on(
        "console",
        lambda m: (
            seen.errors.append(f"console: {m.text}")
            if "Content Security Policy" in m.text or "Trusted" in m.text
            else None
        ),
    )

    def dialog(d: Any) -> None:
        seen.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)

    # Whatever reaches the network for another host is recorded and refused before it goes. (A
    # request the page's CSP refuses never gets this far: the browser does not make it.)
    def elsewhere(route: Any) -> None:
        seen.elsewhere.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^(?!" + re.escape(origin) + r"/|blob:|data:)"), elsewhere)
    return seen


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    seen = watch(tab, server)
    yield tab
    context.close()
    seen.check()


def until(page: Page, predicate: str, timeout_ms: float = 15_000) -> None:
    """Wait for a JavaScript predicate (a function: the page's CSP refuses eval'd strings)."""
    page.wait_for_function(predicate, timeout=timeout_ms)


def search(page: Page, query: str) -> None:
    page.evaluate("() => { delete document.body.dataset.gridDrawnMs; }")  # the last grid's
    page.fill("#q", query)
    page.press("#q", "Enter")
    # This query's grid, drawn (not one a facet click or an earlier search was drawing).
    page.wait_for_function(
        """query => document.body.dataset.gridQuery === query
            && document.body.dataset.gridDrawnMs !== undefined""",
        arg=query,
        timeout=15_000,
    )


def use_key(page: Page, key: str = KEY) -> None:
    page.fill("#key", key)
    page.click("#key-form button[type=submit]")


def api(server: str, method: str, path: str, **options: Any) -> Any:
    response = httpx.request(method, server + path, timeout=30, **options)
    assert response.status_code == 200, response.text
    return response.json()


def item_with_objects(es: Elasticsearch, index: str, at_least: int) -> dict[str, Any]:
    hits = es.search(index=index, size=200, query={"match_all": {}}, sort=[{"item_id": "asc"}])
    for hit in hits["hits"]["hits"]:
        source: dict[str, Any] = hit["_source"]
        if (
            len(source.get("object_predictions") or ()) >= at_least
            and source["item_id"] != XSS_ITEM
        ):
            return source
    raise AssertionError(f"no item with {at_least} objects")


# --- the tests -------------------------------------------------------------------------------


def test_the_page_is_served_under_a_strict_csp(server: str) -> None:
    response = httpx.get(server + "/")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert csp == PAGE_CSP
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert "script-src 'self'" in csp
    html = response.text
    assert "<script>" not in html.replace(" ", "")  # no inline script at all
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert re.search(r"\bstyle=", html) is None
    assert re.search(r"https?://", html) is None  # nothing from another host
    for asset in ("static/page/app.js", "static/page/app.css"):
        served_asset = httpx.get(f"{server}/{asset}")
        assert served_asset.status_code == 200
        assert served_asset.headers["x-content-type-options"] == "nosniff"
        assert re.search(r"https?://(?!www\.w3\.org/2000/svg)", served_asset.text) is None


def test_a_typo_shows_the_caret_and_hint(page: Page, server: str) -> None:
    page.goto(server + "/")
    page.fill("#q", "object_prefix:car AND scor > 0.5")
    until(page, "() => !document.getElementById('query-error').hidden")
    shown = page.inner_text("#query-error")
    lines = shown.splitlines()
    assert lines[0] == "error: unknown field `scor`"
    assert lines[1].strip() == "object_prefix:car AND scor > 0.5"
    # The carets sit under `scor`, as the API rendered them.
    assert lines[2].index("^") - lines[1].index("object") == len("object_prefix:car AND ")
    assert lines[2].strip() == "^^^^"
    assert "did you mean `score`?" in shown
    # Fixed, the caret goes and the canonical query shows.
    page.fill("#q", "object_prefix:car and score>0.5")
    until(page, "() => document.getElementById('query-error').hidden")
    # The canonical form of the fixed query, once its translation is back (until then the
    # box may still show the opening query's: a fresh machine was slow enough to see it).
    canonical = "object_prefix:car AND score > 0.5"
    page.wait_for_function(
        "text => document.getElementById('canonical').textContent === text",
        arg=canonical,
        timeout=15_000,
    )
    assert page.inner_text("#canonical") == canonical


def test_a_slow_answer_for_an_edited_query_leaves_the_new_error(page: Page, server: str) -> None:
    """The error box speaks of what the box holds now, not of a search still under way."""
    page.goto(server + "/")
    search(page, "object_prefix:car")
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)  # the next search waits here, unanswered

    page.route("**/v1/search", hold)
    page.fill("#q", "object_prefix:pedestrian")
    page.press("#q", "Enter")
    for _ in range(100):  # route handlers run while the page is waited on
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    page.fill("#q", "object_prefix:car AND scor > 0.5")  # edited while it is under way
    until(page, "() => !document.getElementById('query-error').hidden")
    page.unroute("**/v1/search")
    held[0].continue_()  # the real answer for the older text arrives now
    page.wait_for_function(
        "() => document.body.dataset.gridQuery === 'object_prefix:pedestrian'", timeout=15_000
    )
    assert page.is_visible("#query-error")
    assert "unknown field `scor`" in page.inner_text("#query-error")
    assert page.inner_text("#canonical") == ""


def test_a_query_shows_thumbnails_with_their_matched_boxes(
    page: Page, server: str, artifacts: Path
) -> None:
    page.goto(server + "/")
    until(page, "() => document.body.dataset.gridDrawnMs !== undefined")
    query = "object_prefix:car AND score >= 0.5"
    search(page, query)
    expected = api(server, "POST", "/v1/search", json={"query": query, "size": 50})
    assert expected["total"] > 3
    cards = page.locator("a.card")
    assert cards.count() == len(expected["hits"])
    for n, hit in enumerate(expected["hits"]):
        card = cards.nth(n)
        assert card.get_attribute("data-item-id") == hit["item"]["item_id"]  # in score order
        objects = [m for m in hit["matched_predictions"] if m["kind"] == "object"]
        assert card.locator("svg rect.box").count() == len(objects) > 0
        # The thumbnail really drew (a decoded image, not a placeholder).
        assert card.locator("img").evaluate("img => img.complete && img.naturalWidth") > 0
    # The boxes sit where the predictions are, in the image's pixel coordinates.
    first = expected["hits"][0]
    box = first["item"]["object_predictions"][first["matched_predictions"][0]["offset"]]["bbox"]
    rect = cards.nth(0).locator("svg rect.box").first
    assert float(rect.get_attribute("x") or "nan") == pytest.approx(box["x1"])
    assert float(rect.get_attribute("width") or "nan") == pytest.approx(box["x2"] - box["x1"])
    assert "pending" in (rect.get_attribute("class") or "")
    page.screenshot(path=str(artifacts / "search-view.png"), full_page=True)


def test_fifty_thumbnails_drawn_and_timed(page: Page, server: str, artifacts: Path) -> None:
    """The figure docs/benchmarks.md records: query submitted → 50 thumbnails drawn.

    Cold: no thumbnail made yet (the server decodes and resizes 50 images on demand), nothing
    in the browser's cache. Warm: the same items again under another query text.
    """
    page.goto(server + "/#" + urlencode({"q": 'item_id = "none"'}))
    until(page, "() => document.body.dataset.gridDrawnMs !== undefined")
    timings = {}
    for run, query in (
        ("cold", 'autotag_status = "pending" AND dataset = "drives"'),
        ("warm", 'dataset = "drives" AND autotag_status = "pending"'),
    ):
        page.fill("#q", query)
        started = page.evaluate("() => performance.now()")
        page.press("#q", "Enter")
        until(
            page,
            """() => {
                const imgs = [...document.querySelectorAll('#grid a.card img')];
                return imgs.length === 50 && imgs.every(i => i.complete && i.naturalWidth > 0);
            }""",
        )
        timings[run] = round(page.evaluate("() => performance.now()") - started, 1)
    (artifacts / "grid-timing.json").write_text(json.dumps(timings))
    print(f"\n[browser] query submitted → 50 thumbnails drawn, ms: {timings}")
    assert page.locator("a.card").count() == 50


def test_review_an_item_with_keyboard_and_drag_then_save(
    page: Page, server: str, es: Elasticsearch, world: str, artifacts: Path
) -> None:
    item = item_with_objects(es, world, 2)
    item_id = item["item_id"]
    query = f'item_id = "{item_id}" OR autotag_status = "pending"'
    page.goto(server + "/")
    use_key(page)
    search(page, query)
    pending_before = int(page.inner_text("#pending-count"))
    page.click(f'a.card[data-item-id="{item_id}"]')
    until(page, "() => document.body.dataset.itemImage === 'loaded'")
    # The first pending prediction is selected: accept it with the keyboard.
    first = page.locator("#predictions li.selected")
    first_key = first.get_attribute("data-key")
    page.keyboard.press("a")
    assert page.locator(f'#predictions li[data-key="{first_key}"] .mark.staged').count() == 1
    # Select an object with the arrow keys, then drag its box.
    objects = page.locator('#predictions li[data-key^="object:"]')
    target_key = objects.nth(1).get_attribute("data-key") or ""
    while page.locator("#predictions li.selected").get_attribute("data-key") != target_key:
        page.keyboard.press("ArrowDown")
    grip = page.locator("#stage svg rect.hit")
    where = grip.bounding_box()
    assert where is not None
    scale = where["width"] / (
        item["object_predictions"][int(target_key.split(":")[1])]["bbox"]["x2"]
        - item["object_predictions"][int(target_key.split(":")[1])]["bbox"]["x1"]
    )
    x, y = where["x"] + where["width"] / 2, where["y"] + where["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 10 * scale, y + 5 * scale, steps=5)
    page.mouse.up()
    assert page.locator(f'#predictions li[data-key="{target_key}"] .mark.staged').count() == 1
    page.screenshot(path=str(artifacts / "item-view.png"), full_page=True)
    page.keyboard.press("s")
    until(page, "() => document.getElementById('save-state').textContent.startsWith('saved')")
    assert page.inner_text("#save-state") == "saved 2 decisions"

    stored = es.get(index=world, id=item_id)["_source"]
    kind, offset = first_key.split(":") if first_key else ("", "0")
    assert stored[f"{kind}_predictions"][int(offset)]["status"] == "accepted"
    moved = stored["object_predictions"][int(target_key.split(":")[1])]
    before = item["object_predictions"][int(target_key.split(":")[1])]["bbox"]
    assert moved["status"] == "modified"
    assert moved["label"] == moved["original_label"]
    assert moved["bbox"]["x1"] == pytest.approx(before["x1"] + 10, abs=1.0)
    assert moved["bbox"]["y1"] == pytest.approx(before["y1"] + 5, abs=1.0)
    assert moved["bbox"]["x2"] - moved["bbox"]["x1"] == pytest.approx(
        before["x2"] - before["x1"], abs=0.2
    )
    assert [e["action"] for e in stored["review_history"]] == ["accept", "modify"]
    # The history shows on the page, and the box is drawn as modified.
    assert page.locator("#history li").count() == 2
    assert page.locator("#stage svg rect.box.modified").count() >= 1
    # Back to the results: the pending count dropped by the two changes.
    page.keyboard.press("Escape")
    until(page, "() => !document.getElementById('search-view').hidden")
    until(
        page,
        f"() => document.getElementById('pending-count').textContent === '{pending_before - 2}'",
    )


def test_a_conflicting_save_from_a_second_tab_shows_the_conflict(
    browser: Browser, server: str, es: Elasticsearch, world: str
) -> None:
    item = item_with_objects(es, world, 1)
    url = f"{server}/#item={item['item_id']}"
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    first, second = context.new_page(), context.new_page()
    seen = [watch(first, server), watch(second, server)]
    for tab, key in ((first, KEY), (second, OTHER_KEY)):
        tab.goto(url)
        use_key(tab, key)  # each tab keeps its own key: session storage is per tab
        until(tab, "() => document.querySelectorAll('#predictions li').length > 0")
    assert first.evaluate("() => sessionStorage.getItem('autotag.reviewKey')") == KEY
    assert first.evaluate("() => localStorage.length") == 0
    # The second tab accepts and saves first.
    second.keyboard.press("a")
    second.keyboard.press("s")
    until(second, "() => document.getElementById('save-state').textContent.startsWith('saved')")
    # The first tab, still on the old version, rejects the same prediction and saves.
    selected = first.locator("#predictions li.selected").get_attribute("data-key") or ""
    first.keyboard.press("r")
    first.keyboard.press("s")
    until(first, "() => !document.getElementById('conflict').hidden")
    assert "changed since you opened it" in first.inner_text("#conflict-text")
    assert "1 unsaved decision" in first.inner_text("#conflict-text")
    # The current state is shown: the prediction the other tab accepted.
    assert first.locator('#conflict-current li[data-status="accepted"]').count() == 1
    kind, offset = selected.split(":")
    stored = es.get(index=world, id=item["item_id"])["_source"]
    assert stored[f"{kind}_predictions"][int(offset)]["status"] == "accepted"  # nothing lost
    assert first.locator(f'#predictions li[data-key="{selected}"] .mark.staged').count() == 1
    # Carried over to the current version, the decision saves.
    first.click("#conflict-rebase")
    first.keyboard.press("s")
    until(first, "() => document.getElementById('save-state').textContent.startsWith('saved')")
    stored = es.get(index=world, id=item["item_id"])["_source"]
    assert stored[f"{kind}_predictions"][int(offset)]["status"] == "rejected"
    assert [e["who"] for e in stored["review_history"]] == ["bob", "alice"]
    context.close()
    for watched in seen:
        watched.check()


def test_facets_sort_high_confidence_pages_keys_and_relabel(
    page: Page, server: str, es: Elasticsearch, world: str
) -> None:
    page.goto(server + "/#" + urlencode({"q": "object_prefix:car"}))
    until(page, "() => document.body.dataset.gridDrawnMs !== undefined")
    until(page, "() => document.querySelectorAll('#facets li').length > 0")
    # A facet narrows the query by editing its text.
    page.click('#facets li[data-label="pedestrian"] > button')
    until(page, "() => document.getElementById('q').value.includes('pedestrian')")
    assert page.input_value("#q") == '(object_prefix:car) AND object_prefix:"pedestrian"'
    until(page, "() => !location.hash.includes('q=object_prefix%3Acar&')")

    def shown() -> list[str]:
        cards = page.locator("a.card")
        return [cards.nth(n).get_attribute("data-item-id") or "" for n in range(cards.count())]

    def api_order(query: str, order: str) -> list[str]:
        body = {"query": query, "size": 50, "sort": "score", "order": order}
        return [h["item"]["item_id"] for h in api(server, "POST", "/v1/search", json=body)["hits"]]

    # Matched score, both ways.
    search(page, "object_prefix:car")
    assert shown() == api_order("object_prefix:car", "desc")
    page.select_option("#sort", "score:asc")
    until(
        page,
        f"() => document.querySelector('a.card').dataset.itemId === "
        f"'{api_order('object_prefix:car', 'asc')[0]}'",
    )
    assert shown() == api_order("object_prefix:car", "asc")
    # High confidence first: one click.
    page.click("#high-confidence")
    high = "(object_prefix:car) AND (score = high AND status = pending)"
    until(
        page,
        f"() => document.getElementById('canonical').textContent !== '' && "
        f"document.getElementById('q').value === '{high}'",
    )
    until(
        page,
        f"() => document.querySelector('a.card').dataset.itemId === '{api_order(high, 'desc')[0]}'",
    )
    assert page.input_value("#sort") == "score:desc"
    assert shown() == api_order(high, "desc")
    # Cursor pages: 61 pending items, 50 a page.
    search(page, 'autotag_status = "pending"')
    first_page = shown()
    page.click("#next-page")
    until(page, "() => document.getElementById('page-no').textContent === 'page 2'")
    until(page, "() => document.querySelectorAll('a.card').length === 11")
    assert not set(shown()) & set(first_page)
    page.click("#prev-page")
    until(page, "() => document.getElementById('page-no').textContent === 'page 1'")
    assert shown() == first_page
    # Keys move between items.
    use_key(page)
    page.click("a.card >> nth=0")
    until(page, f"() => document.body.dataset.itemLoaded === '{first_page[0]}'")
    page.keyboard.press("ArrowRight")
    until(page, f"() => document.body.dataset.itemLoaded === '{first_page[1]}'")
    page.keyboard.press("k")
    until(page, f"() => document.body.dataset.itemLoaded === '{first_page[0]}'")
    # Relabel from the labels in use: m, choose, Enter, s.
    item = es.get(index=world, id=first_page[0])["_source"]
    key = "image:0"
    page.click(f'#predictions li[data-key="{key}"]')
    page.keyboard.press("m")
    until(page, "() => !document.getElementById('relabel').hidden")
    offered = page.locator("#relabel-select option").all_inner_texts()
    labels = api(server, "GET", "/v1/labels")["image"]
    assert set(offered) == set(labels) | {item["image_predictions"][0]["label"]}
    new_label = next(label for label in labels if label != item["image_predictions"][0]["label"])
    page.select_option("#relabel-select", new_label)
    page.press("#relabel-select", "Enter")
    page.keyboard.press("s")
    until(page, "() => document.getElementById('save-state').textContent.startsWith('saved')")
    stored = es.get(index=world, id=first_page[0])["_source"]["image_predictions"][0]
    assert (stored["label"], stored["original_label"], stored["status"]) == (
        new_label,
        item["image_predictions"][0]["label"],
        "modified",
    )


def test_a_hostile_label_renders_as_text(page: Page, server: str) -> None:
    page.goto(server + "/")
    search(page, f'item_id = "{XSS_ITEM}" AND score >= 0.5')
    # In the facets and on the card, as text.
    assert page.locator("#facets li", has_text=XSS_LABEL).count() >= 1
    assert XSS_LABEL in page.inner_text("a.card .chips")
    page.click("a.card")
    until(page, "() => document.querySelectorAll('#predictions li').length === 2")
    assert XSS_LABEL in page.inner_text("#predictions")
    assert page.locator("#stage svg text", has_text=XSS_LABEL).count() == 1
    assert "<script>alert(2)</script>" in page.inner_text("#metadata")
    # The query is echoed as text too: canonical form, hints, the review-by-query panel.
    page.keyboard.press("Escape")
    until(page, "() => !document.getElementById('search-view').hidden")
    hostile_query = 'object_prefix:"<img src=x onerror=alert(3)>"'
    search(page, hostile_query)
    until(page, "() => !document.getElementById('hints').hidden")
    assert page.inner_text("#canonical") == hostile_query
    assert "<img src=x onerror=alert(3)>" in page.inner_text("#hints")
    page.click("#bulk-open")
    until(page, "() => document.getElementById('bulk-count').dataset.predictions !== undefined")
    assert page.inner_text("#bulk-query") == hostile_query
    # No element was made from any of it: the only images are the page's own.
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("#predictions img, #metadata script, #facets img").count() == 0


def test_review_by_query_changes_exactly_the_dry_run_count(
    page: Page, server: str, es: Elasticsearch, world: str
) -> None:
    query = "object_prefix:car AND score >= 0.8"
    page.goto(server + "/")
    use_key(page)
    search(page, query)
    page.click("#bulk-open")
    until(page, "() => document.getElementById('bulk-count').dataset.predictions !== undefined")
    dry_run = int(page.get_attribute("#bulk-count", "data-predictions") or "-1")
    assert dry_run > 0
    assert page.is_visible("#bulk-confirm") is False
    page.click("#bulk-accept")
    assert page.is_visible("#bulk-confirm")  # asked first
    assert str(dry_run) in page.inner_text("#bulk-confirm-text")
    page.click("#bulk-yes")
    until(page, "() => document.getElementById('bulk-result').dataset.predictions !== undefined")
    assert int(page.get_attribute("#bulk-result", "data-predictions") or "-1") == dry_run
    es.indices.refresh(index=world)
    hits = es.search(index=world, size=500, query={"match_all": {}})["hits"]["hits"]
    runs = [e for h in hits for e in h["_source"].get("review_history") or ()]
    assert len(runs) == dry_run
    assert len({e["run_id"] for e in runs}) == 1
    after = api(server, "POST", "/v1/review-by-query/preview", json={"query": query})
    assert after["predictions"] == 0


def test_a_query_naming_no_label_shows_the_hint(page: Page, server: str) -> None:
    page.goto(server + "/")
    search(page, 'object_prefix:"traffic light"')
    until(page, "() => !document.getElementById('hints').hidden")
    expected = api(server, "POST", "/v1/count", json={"query": 'object_prefix:"traffic light"'})
    [hint] = expected["hints"]
    shown = page.inner_text("#hints")
    assert "traffic light" in shown
    assert hint["closest"]
    for label in hint["closest"]:
        assert label in shown
    assert page.locator("a.card").count() == 0


def test_closed_reads_need_the_key_entered_in_the_page(
    browser: Browser, es_url: str, world: str, tmp_path: Path
) -> None:
    settings = _settings(es_url, world, tmp_path / "cache", open_reads=False)
    with served(create_app(settings)) as url:
        context = browser.new_context()
        tab = context.new_page()
        seen = watch(tab, url)
        tab.goto(url + "/")
        until(tab, "() => !document.getElementById('notice').hidden")
        assert "needs an API key" in tab.inner_text("#notice")
        assert tab.locator("a.card").count() == 0
        use_key(tab)
        search(tab, 'autotag_status = "pending"')
        # Thumbnails came with the key (fetched, shown from blob: URLs).
        images = tab.locator("a.card img")
        assert images.count() > 0
        assert images.first.evaluate("img => img.src.startsWith('blob:') && img.naturalWidth") > 0
        assert tab.evaluate("() => document.cookie") == ""
        assert tab.evaluate("() => localStorage.length") == 0
        # The key was typed into the page, never shown or kept in the DOM.
        assert tab.input_value("#key") == ""
        context.close()
        seen.check()


@pytest.mark.parametrize(
    ("path", "rendered", "blocked"),
    [
        ("/docs", ".swagger-ui .info", ()),
        # ReDoc renders a logo from cdn.redoc.ly whatever its options: the CSP refuses it.
        ("/redoc", "h1", ("cdn.redoc.ly/redoc/logo-mini.svg",)),
    ],
)
def test_api_docs_render_offline_under_a_strict_csp(
    browser: Browser, server: str, path: str, rendered: str, blocked: tuple[str, ...]
) -> None:
    response = httpx.get(server + path)
    csp = response.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    context = browser.new_context()
    tab = context.new_page()
    seen = watch(tab, server)
    tab.goto(server + path)
    tab.wait_for_selector(rendered, timeout=30_000)
    assert "autotag" in tab.inner_text(rendered)
    # Rendered, not a bare page: the operations are listed.
    tab.wait_for_function("() => document.body.innerText.includes('/v1/search')", timeout=30_000)
    time.sleep(0.5)  # late requests (fonts, badges, logos) would show up here
    context.close()
    seen.check(blocked=blocked)


# --- evaluation ------------------------------------------------------------------------------


def _evaluate_in_page(page: Page) -> None:
    page.evaluate("() => { delete document.getElementById('evaluate').dataset.state; }")
    page.click("#eval-run")
    until(
        page, "() => ['done', 'error'].includes(document.querySelector('#evaluate').dataset.state)"
    )


def _shown_figures(page: Page) -> dict[tuple[str, str, str], dict[str, str]]:
    """Per (training set, kind, label): each figure cell's exact value (``data-value``) and
    shown text, read off the page's tables."""
    cells: list[dict[str, str]] = page.eval_on_selector_all(
        "#eval-tables td[data-col]",
        """cells => cells.map(td => ({
            set: td.closest('table').dataset.trainingSet,
            kind: td.closest('tr').dataset.kind,
            label: td.closest('tr').dataset.label,
            col: td.dataset.col,
            value: td.dataset.value === undefined ? '' : td.dataset.value,
            text: td.firstChild ? td.firstChild.textContent : '',
        }))""",
    )
    out: dict[tuple[str, str, str], dict[str, str]] = {}
    for cell in cells:
        row = out.setdefault((cell["set"], cell["kind"], cell["label"]), {})
        row[cell["col"]] = cell["value"]
        row[cell["col"] + ":text"] = cell["text"]
    return out


RATIOS = ("precision", "recall", "f1", "ap", "ap_50_95", "high")


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """A label's figures as the table shows them (``high``: the high band's precision)."""
    [high] = [b for b in metrics["calibration"] if b["band"] == "high"]
    names = ("truth", "tp", "fp", "fn", "precision", "recall", "f1", "ap", "ap_50_95")
    return {**{name: metrics[name] for name in names}, "high": high["precision"]}


def _check_table(page: Page, report: dict[str, Any]) -> None:
    """The page's table holds the report's figures, each exactly and shown rounded; a column
    is left out only when no label of the report has that figure (reviews: recall...)."""
    shown = _shown_figures(page)
    expected = {
        (ts["training_set"], m["kind"], m["label"]): _figures(m)
        for ts in report["training_sets"]
        for m in ts["labels"]
    }
    assert set(shown) == set(expected)
    for key, figures in expected.items():
        row = shown[key]
        for name, value in figures.items():
            if name not in row:
                assert all(other[name] is None for other in expected.values()), name
            elif value is None:
                assert (row[name], row[name + ":text"]) == ("", "\N{EN DASH}"), (key, name)
            elif name in RATIOS:
                assert float(row[name]) == value, (key, name)
                assert abs(float(row[name + ":text"]) - value) <= 0.0005 + 1e-12, (key, name)
            else:
                assert (int(row[name]), row[name + ":text"]) == (value, str(value)), (key, name)


def _picture_in_page(page: Page) -> list[int]:
    """The Evaluate panel's picture as the browser decoded it: width, height and a
    position-weighted sum of its RGBA bytes (a moved or changed pixel changes it)."""
    shown: list[int] = page.eval_on_selector(
        "#eval-plot",
        """img => {
            const canvas = document.createElement('canvas');
            canvas.width = img.naturalWidth;
            canvas.height = img.naturalHeight;
            const context = canvas.getContext('2d');
            context.drawImage(img, 0, 0);
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let sum = 0;
            for (let i = 0; i < data.length; i++) sum += data[i] * ((i % 9973) + 1);
            return [img.naturalWidth, img.naturalHeight, sum];
        }""",
    )
    return shown


def _picture(png: bytes) -> list[int]:
    """The same for PNG bytes, decoded by Pillow."""
    with Image.open(io.BytesIO(png)) as image:
        width, height = image.size
        values = np.frombuffer(image.convert("RGBA").tobytes(), dtype=np.uint8).astype(np.int64)
    weights = np.arange(values.size, dtype=np.int64) % 9973 + 1
    return [width, height, int((values * weights).sum())]


def test_evaluate_shows_the_pictures_and_the_figures_of_the_api(
    browser: Browser, es_url: str, es: Elasticsearch, world: str, images: Path, tmp_path: Path,
    artifacts: Path,
) -> None:  # fmt: skip
    add_evaluation(es, world, images)
    # Reads need the key here: the panel's requests, the picture's too, must carry it.
    settings = _settings(es_url, world, tmp_path / "cache", open_reads=False)
    keyed: dict[str, Any] = {"headers": {"X-API-Key": KEY}}
    with served(create_app(settings)) as server:
        for query, action in (
            ("object_prefix:car AND score >= 0.7", "accept"),
            ("object_prefix:traffic_sign_stop AND score >= 0.6", "reject"),
            ("image_prefix:weather AND score < 0.5", "reject"),
            ("image_prefix:scene AND score >= 0.5", "accept"),
        ):
            bulk = {"query": query, "action": action}
            assert api(server, "POST", "/v1/review-by-query", json=bulk, **keyed)["predictions"]
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        seen = watch(page, server)
        query = 'dataset = "drives"'
        page.goto(server + "/#" + urlencode({"q": query}))
        use_key(page)
        search(page, query)
        page.locator("#q").blur()
        page.keyboard.press("e")  # the key opens the panel on the query
        until(page, "() => document.getElementById('evaluate').dataset.state === 'ready'")
        # What the API offers for this query, with its defaults selected.
        choices = api(server, "POST", "/v1/evaluate/choices", json={"query": query}, **keyed)
        names = [t["name"] for t in choices["training_sets"]]
        assert sorted(names) == [SHIFTED_SET, TRAINING_SET]
        values = "options => options.map(o => o.value)"
        assert page.eval_on_selector_all("#eval-a option", values) == names
        assert page.eval_on_selector_all("#eval-b option", values) == ["", *names]
        assert page.eval_on_selector_all("#eval-truth option", values) == [
            "reviews", TRUTH_SOURCE
        ]  # fmt: skip
        assert page.input_value("#eval-truth") == choices["defaults"]["truth"] == "reviews"
        assert float(page.input_value("#eval-iou")) == choices["defaults"]["iou_threshold"]
        assert float(page.input_value("#eval-score")) == choices["defaults"]["score_threshold"]
        page.select_option("#eval-a", TRAINING_SET)
        page.select_option("#eval-b", SHIFTED_SET)

        for truth, iou in (("reviews", "0.5"), (TRUTH_SOURCE, "0.75")):
            page.select_option("#eval-truth", truth)
            page.select_option("#eval-iou", iou)
            _evaluate_in_page(page)
            assert page.get_attribute("#evaluate", "data-state") == "done"
            body: dict[str, Any] = {
                "query": query,
                "training_sets": [TRAINING_SET, SHIFTED_SET],
                "truth": truth,
                "iou_threshold": float(iou),
                "score_threshold": 0.5,
            }
            report = api(server, "POST", "/v1/evaluate", json=body, **keyed)
            # The picture: decoded in the browser, and the very one the API draws.
            until(
                page,
                """() => { const img = document.getElementById('eval-plot');
                    return img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0;
                }""",
            )
            drawn = httpx.post(
                server + "/v1/evaluate/plot", json=body, headers={"X-API-Key": KEY}, timeout=60
            )
            assert drawn.status_code == 200
            assert _picture_in_page(page) == _picture(drawn.content)
            assert truth in (page.get_attribute("#eval-plot", "alt") or "")
            # The figures, the verdicts, and what cannot be known.
            _check_table(page, report)
            [pair] = report["comparisons"]
            verdicts = page.locator("#eval-verdicts li li").all_inner_texts()
            assert verdicts == [row["verdict"] for row in pair["labels"]]
            shown = page.inner_text("#eval-known")
            assert all(f"unknown: {line}" in shown for line in report["unknown"])
            if truth == "reviews":
                assert any("recall" in line for line in report["unknown"])
                assert page.locator('#eval-tables th:text-is("recall")').count() == 0
            else:
                assert report["unknown"] == []
                assert page.locator('#eval-tables th:text-is("AP")').count() == 2
                assert any(f"{TRAINING_SET} is better on car" in v for v in verdicts)
            page.screenshot(path=str(artifacts / f"evaluate-{truth}.png"), full_page=True)
        context.close()
        seen.check()


def test_evaluate_errors_show_like_query_errors(page: Page, server: str) -> None:
    page.goto(server + "/")
    until(page, "() => document.body.dataset.gridDrawnMs !== undefined")
    page.fill("#q", "object_prefix:car AND scor > 0.5")
    page.click("#eval-open")
    until(page, "() => document.getElementById('evaluate').dataset.state === 'error'")
    lines = page.inner_text("#eval-error").splitlines()
    assert lines[0] == "error: unknown field `scor`"
    assert lines[2].index("^") - lines[1].index("object") == len("object_prefix:car AND ")
    assert "did you mean `score`?" in page.inner_text("#eval-error")
    # A similarity clause: refused at the clause (an evaluation takes every item of a slice).
    page.fill("#q", 'dataset = "drives" AND similar:"a car at night"')
    page.click("#eval-open")
    until(page, "() => document.getElementById('evaluate').dataset.state === 'error'")
    shown = page.inner_text("#eval-error")
    lines = shown.splitlines()
    assert "an evaluation takes every item" in lines[0]
    assert lines[2].index("^") - lines[1].index("dataset") == len('dataset = "drives" AND ')
    # A truth source that is not there (gone since the choices were read): the sources listed.
    page.fill("#q", 'dataset = "drives"')
    page.click("#eval-open")
    until(page, "() => document.getElementById('evaluate').dataset.state === 'ready'")
    assert page.is_hidden("#eval-error")
    page.evaluate("() => document.getElementById('eval-truth').append(new Option('gone', 'gone'))")
    page.select_option("#eval-truth", "gone")
    _evaluate_in_page(page)
    assert page.get_attribute("#evaluate", "data-state") == "error"
    assert page.inner_text("#eval-error") == (
        "no item has ground truth from 'gone'; the sources there are: reviews"
    )
    assert page.is_hidden("#eval-result")
