"""Zero-hit guidance: the query's label terms that name no label in the index, with look-alikes.

A query such as ``object_prefix:"traffic light"`` is valid, and matches nothing when the
labels are written ``traffic_light``. Answers with no hits say so (never an error). The labels
present, per kind, come from one terms aggregation on the nested ``label_prefixes`` (what a
label term is matched against), kept ``LABELS_TTL_S`` seconds per index, and are read only
for empty answers: the hot path never pays for them.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, assert_never

import elastic_transport
import elasticsearch
from elasticsearch import AsyncElasticsearch

from api.cache import PerIndexCache
from api.errors import ApiError, whole_answer
from api.models import LabelHint
from search import Node
from search.ast import And, Comparison, Count, Label, Not, Op, Or, Similar
from store import schema as f
from store.schema import PredictionKind

LABELS_TTL_S: Final = 30.0
# Distinct label prefixes read per kind; beyond that the list is incomplete and absence
# cannot be told, so no hint is given for that kind.
MAX_LABELS: Final = 10_000
CLOSEST: Final = 5
_CUTOFF: Final = 0.6

log = logging.getLogger("autotag.api")

# Per kind, the label prefixes present, or None when there are more than MAX_LABELS.
KnownLabels = Mapping[PredictionKind, frozenset[str] | None]
_known: PerIndexCache[KnownLabels] = PerIndexCache(LABELS_TTL_S)


def normalise(label: str) -> str:
    """Lower case, each run of other characters than letters and digits one ``_``.

    >>> normalise("Traffic light")
    'traffic_light'
    """
    return re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_")


def required_labels(node: Node) -> Iterator[Label]:
    """Label terms an item must match for the query to match it (none under ``NOT``)."""
    match node:
        case Label():
            yield node
        case Comparison() | Not() | Similar():
            return
        case And(operands) | Or(operands):
            for child in operands:
                yield from required_labels(child)
        case Count(condition, op, number):
            # Only counts that need at least one matching prediction: `count(L) = 0` is met
            # by a label that is nowhere.
            if (op is Op.GT and number >= 0) or (op in (Op.GE, Op.EQ) and number >= 1):
                yield from required_labels(condition)
        case _:
            assert_never(node)


def exists(label: Label, present: frozenset[str]) -> bool:
    if label.prefix:
        return any(known.startswith(label.value) for known in present)
    return label.value in present


def closest(label: Label, present: frozenset[str]) -> list[str]:
    """Existing labels like ``label``: same after :func:`normalise` first, then by similarity."""
    typed = normalise(label.value)
    by_form: dict[str, list[str]] = {}
    for known in sorted(present):
        by_form.setdefault(normalise(known), []).append(known)
    if label.prefix:
        same = [form for form in by_form if form.startswith(typed)] if typed else []
    else:
        same = [typed] if typed in by_form else []
    alike = difflib.get_close_matches(typed, list(by_form), n=CLOSEST, cutoff=_CUTOFF)
    out: list[str] = []
    for form in [*sorted(same, key=len), *alike]:
        for known in by_form[form]:
            if known not in out:
                out.append(known)
    return out[:CLOSEST]


def hints(ast: Node, known: KnownLabels) -> list[LabelHint]:
    """A hint per distinct required label term of ``ast`` that names no label of its kind."""
    out: list[LabelHint] = []
    seen: set[tuple[PredictionKind, str, bool]] = set()
    for label in required_labels(ast):
        if label.truth:  # the known labels are the predictions'; truth has its own
            continue
        key = (label.kind, label.value, label.prefix)
        present = known.get(label.kind)
        if key in seen or present is None or exists(label, present):
            continue
        seen.add(key)
        out.append(
            LabelHint(
                kind=label.kind,
                typed=label.value,
                prefix=label.prefix,
                closest=closest(label, present),
            )
        )
    return out


def labels_body() -> dict[str, Any]:
    """One ``_search`` body that lists the label prefixes present, per kind."""
    aggs = {
        kind.value: {
            "nested": {"path": kind.path},
            "aggs": {
                "labels": {
                    "terms": {"field": f"{kind.path}.{f.PRED_LABEL_PREFIXES}", "size": MAX_LABELS}
                }
            },
        }
        for kind in PredictionKind
    }
    return {"size": 0, "track_total_hits": False, "aggs": aggs}


def known_labels(response: Mapping[str, Any]) -> KnownLabels:
    """The labels of each kind in the answer to :func:`labels_body`; None where not all are."""
    aggs = response.get("aggregations") or {}
    out: dict[PredictionKind, frozenset[str] | None] = {}
    for kind in PredictionKind:
        terms = (aggs.get(kind.value) or {}).get("labels")
        if terms is None or terms.get("sum_other_doc_count", 0) != 0:
            out[kind] = None
        else:
            out[kind] = frozenset(str(b["key"]) for b in terms["buckets"])
    return out


async def label_hints(es: AsyncElasticsearch, index: str, ast: Node) -> list[LabelHint]:
    """Hints for an empty answer to ``ast``; none when the labels cannot be read."""
    if next(required_labels(ast), None) is None:
        return []

    async def load() -> KnownLabels:
        return known_labels(whole_answer(await es.search(index=index, body=labels_body())))

    try:
        known = await _known.get(index, load)
    except (ApiError, elasticsearch.ApiError, elastic_transport.TransportError) as exc:
        # Advice only (a partial list proves no absence): the answer stands without it.
        log.warning("label hints unavailable for index %s: %s", index, exc)
        return []
    return hints(ast, known)


def dump(found: Sequence[LabelHint]) -> list[dict[str, Any]]:
    """As plain data, for routes that answer without building their response model."""
    return [hint.model_dump(mode="json") for hint in found]
