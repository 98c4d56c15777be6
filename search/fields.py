"""What the language knows about fields: names, kinds, value types, and how values are read.

The parser asks this module to turn ``field op value`` into a typed comparison (raising a
:class:`~search.errors.QueryError` with the span of the culprit); the translator and the
evaluator ask it where a field lives and what a score band covers.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Final

from search.ast import Band, Instant, Number, Op, ScoreBand, SimilarityKind, Span, Text, Value
from search.errors import (
    InvalidValueError,
    LeadingWildcardError,
    TypeMismatchError,
    UnknownFieldError,
    UnknownPrefixError,
    UnsupportedOperatorError,
    WildcardError,
)
from store import schema as f
from store.schema import ItemStatus, PredictionKind, PredictionStatus


class ValueType(Enum):
    SCORE = "a number or a score band"
    NUMBER = "a number"
    INTEGER = "a whole number"
    TEXT = "text"
    ENUM = "one of a fixed set of words"
    DATE = "a date"
    DYNAMIC = "a number or text"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    # True for prediction attributes (they bind to labels); False for item fields.
    attribute: bool
    type: ValueType
    choices: tuple[str, ...] = ()
    # Attributes only object predictions have (box geometry): they bind to object labels only.
    objects_only: bool = False
    # The values a stored field can take (inclusive); a comparison with a value outside them
    # could never hold (``box_area < -1``) or is a unit mistake (``relative_area > 5``).
    bounds: tuple[float, float] | None = None


ATTRIBUTES: Final = {
    spec.name: spec
    for spec in (
        FieldSpec(f.PRED_SCORE, True, ValueType.SCORE),
        FieldSpec(f.PRED_TRAINING_SET, True, ValueType.TEXT),
        FieldSpec(f.PRED_STATUS, True, ValueType.ENUM, tuple(s.value for s in PredictionStatus)),
        FieldSpec(f.PRED_MODEL, True, ValueType.TEXT),
        *(
            FieldSpec(name, True, ValueType.NUMBER, objects_only=True, bounds=bounds)
            for name, bounds in f.BOX_GEOMETRY_BOUNDS.items()
        ),
    )
}
OBJECT_ONLY_ATTRIBUTES: Final = frozenset(n for n, spec in ATTRIBUTES.items() if spec.objects_only)
# Attributes stored as 32-bit floats (comparisons happen at that precision).
FLOAT_ATTRIBUTES: Final = frozenset({f.PRED_SCORE, *f.BOX_GEOMETRY})
ITEM_FIELDS: Final = {
    spec.name: spec
    for spec in (
        FieldSpec(f.AUTOTAG_STATUS, False, ValueType.ENUM, tuple(s.value for s in ItemStatus)),
        FieldSpec(f.DATASET, False, ValueType.TEXT),
        FieldSpec(f.ITEM_ID, False, ValueType.TEXT),
        FieldSpec(f.URI, False, ValueType.TEXT),
        FieldSpec(f.TAGGED_BY, False, ValueType.TEXT),
        FieldSpec(f.TRUTH_SOURCE, False, ValueType.TEXT),
        FieldSpec(f.UPLOADED_AT, False, ValueType.DATE),
        FieldSpec(f.WIDTH, False, ValueType.INTEGER),
        FieldSpec(f.HEIGHT, False, ValueType.INTEGER),
    )
}
PREFIX_FIELDS: Final = {f"{kind.value}_prefix": kind for kind in PredictionKind}
# Labels of the imported ground truth: ``truth_object_prefix:pedestrian``.
TRUTH_PREFIX_FIELDS: Final = {f"truth_{kind.value}_prefix": kind for kind in PredictionKind}
# `slice = "name"` stands for a saved query (resolved by the parser, see search.slices).
SLICE_FIELD: Final = "slice"
METADATA_PREFIX: Final = f.METADATA + "."

# Score bands, from the product page's table: [low, high), except ``high`` which includes 1.0.
# (low, high, high_inclusive)
BAND_RANGES: Final[dict[Band, tuple[float, float, bool]]] = {
    Band.HIGH: (0.8, f.SCORE_MAX, True),
    Band.MEDIUM: (0.5, 0.8, False),
    Band.LOW: (0.0, 0.5, False),
    Band.NEGATIVE: (f.SCORE_MIN, 0.0, False),
}

# A score worth showing in examples and hints: where the high band starts.
SCORE_EXAMPLE: Final = BAND_RANGES[Band.HIGH][0]

NUMBER_RE: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DATE_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?",
    re.IGNORECASE,
)
NUMBER_LIMIT: Final = 1e15
INT32: Final = (-(2**31), 2**31 - 1)

# Instants are UTC milliseconds since 1970; Python's dates (years 1 to 9999) bound them.
DAY_MS: Final = 86_400_000
EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
MIN_EPOCH_MS: Final = (date.min.toordinal() - EPOCH_ORDINAL) * DAY_MS
MAX_EPOCH_MS: Final = (date.max.toordinal() - EPOCH_ORDINAL + 1) * DAY_MS - 1


def iso_text(epoch_ms: int, *, whole_day: bool = False) -> str:
    """``YYYY-MM-DD`` (``whole_day``) or ``YYYY-MM-DDTHH:MM:SS.mmmZ``, in UTC.

    Millisecond-precise, so :func:`read_date` reads it back exactly and Elasticsearch has
    nothing to round. ``epoch_ms`` must lie within ``MIN_EPOCH_MS..MAX_EPOCH_MS``.
    """
    days, millis = divmod(epoch_ms, DAY_MS)
    day = date.fromordinal(EPOCH_ORDINAL + days).isoformat()
    if whole_day:
        return day
    seconds, millis = divmod(millis, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{day}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def _did_you_mean(word: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(word.lower(), candidates, n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def all_field_names() -> list[str]:
    return [*ATTRIBUTES, *ITEM_FIELDS, f"{f.METADATA}.<key>", SLICE_FIELD]


def lookup_field(name: str, span: Span) -> FieldSpec:
    """The spec for a comparison's field, or an error saying what was meant."""
    lowered = name.lower()
    spec = ATTRIBUTES.get(lowered) or ITEM_FIELDS.get(lowered)
    if spec is not None:
        return spec
    if lowered.startswith(METADATA_PREFIX):
        key = name[len(METADATA_PREFIX) :]
        if key and not key.startswith(".") and not key.endswith(".") and ".." not in key:
            return FieldSpec(METADATA_PREFIX + key, False, ValueType.DYNAMIC)
        raise UnknownFieldError(
            f"`{name}` is not a metadata field",
            span.start,
            span.end,
            hint="name a metadata key, e.g. `metadata.camera = front`",
        )
    if lowered in PREFIX_FIELDS or lowered in TRUTH_PREFIX_FIELDS:
        raise UnsupportedOperatorError(
            f"`{lowered}` takes a label after `:`, not an operator",
            span.start,
            span.end,
            hint=f"write `{lowered}:<label>`, e.g. `{lowered}:car`",
        )
    hint = _did_you_mean(
        name,
        [*ATTRIBUTES, *ITEM_FIELDS, *PREFIX_FIELDS, *TRUTH_PREFIX_FIELDS, f.METADATA, SLICE_FIELD],
    )
    raise UnknownFieldError(
        f"unknown field `{name}`",
        span.start,
        span.end,
        hint=hint or "fields are " + ", ".join(all_field_names()),
    )


def lookup_label(name: str, span: Span) -> tuple[PredictionKind, bool]:
    """The kind of a label prefix and whether it names ground truth, or an error."""
    lowered = name.lower()
    kind = PREFIX_FIELDS.get(lowered)
    if kind is not None:
        return kind, False
    kind = TRUTH_PREFIX_FIELDS.get(lowered)
    if kind is not None:
        return kind, True
    if lowered in ATTRIBUTES or lowered in ITEM_FIELDS or lowered.startswith(METADATA_PREFIX):
        hint = f"`{name}` is compared with an operator, e.g. `{lowered} = ...`"
    else:
        known = [*PREFIX_FIELDS, *TRUTH_PREFIX_FIELDS, *(kind.value for kind in SimilarityKind)]
        hint = _did_you_mean(name, known) or (
            "use `image_prefix:` or `object_prefix:` (ground truth: `truth_object_prefix:`)"
        )
    raise UnknownPrefixError(f"unknown prefix `{name}:`", span.start, span.end, hint=hint)


def read_label(raw: str, quoted: bool, star: bool, span: Span) -> tuple[str, bool]:
    """A label value and whether it is a plain prefix (trailing ``*``)."""
    if not quoted:
        if raw.startswith("*"):
            raise LeadingWildcardError(
                "leading wildcards are not supported",
                span.start,
                span.end,
                hint="a label must start with text; `*` may only end it, e.g. `car*`",
            )
        star = raw.endswith("*")
        raw = raw[:-1] if star else raw
        if "*" in raw:
            raise WildcardError(
                "`*` is only allowed at the end of a label",
                span.start,
                span.end,
                hint='quote the label to search for a literal `*`: "a*b"',
            )
    if not raw:
        raise InvalidValueError(
            "empty label", span.start, span.end, hint="write a label, e.g. `object_prefix:car`"
        )
    return raw, star


def _number(raw: str, span: Span) -> Number | None:
    if not NUMBER_RE.fullmatch(raw):
        return None
    if len(raw) > 64:  # also keeps int() clear of Python's digit limit
        raise InvalidValueError(f"number `{raw[:20]}...` is too long", span.start, span.end)
    is_int = not any(c in raw for c in ".eE")
    value: int | float = int(raw) if is_int else float(raw)
    if not abs(value) <= NUMBER_LIMIT:
        raise InvalidValueError(
            f"number `{raw}` is out of range",
            span.start,
            span.end,
            hint=f"numbers must lie within ±{NUMBER_LIMIT:g}",
        )
    return Number(value)


def read_date(raw: str, span: Span) -> Instant | None:
    """An ISO date (a whole UTC day) or datetime (UTC unless an offset is given)."""
    match = _DATE_RE.fullmatch(raw)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - EPOCH_ORDINAL
        hours, minutes, seconds = int(hour or 0), int(minute or 0), int(second or 0)
        if hours > 23 or minutes > 59 or seconds > 59:
            raise ValueError("time of day out of range")
        millis_offset = 0
        if zone and zone.upper() != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            offset_minutes = int(digits[:2]) * 60 + int(digits[2:])
            if offset_minutes >= 24 * 60:
                raise ValueError("offset out of range")
            millis_offset = sign * offset_minutes * 60_000
    except ValueError as error:
        raise InvalidValueError(
            f"`{raw}` is not a valid date ({error})",
            span.start,
            span.end,
            hint="write dates as YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[Z|±HH:MM]",
        ) from None
    millis = int((fraction or "0").ljust(3, "0")[:3])
    epoch_ms = ((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000 + millis
    epoch_ms -= millis_offset
    if not MIN_EPOCH_MS <= epoch_ms <= MAX_EPOCH_MS:
        # An offset can push year 1 or year 9999 out of the range dates can be written in.
        raise InvalidValueError(
            f"`{raw}` is out of range",
            span.start,
            span.end,
            hint=f"dates must lie between {iso_text(MIN_EPOCH_MS)} and {iso_text(MAX_EPOCH_MS)}",
        )
    return Instant(epoch_ms, whole_day=hour is None)


def read_value(spec: FieldSpec, op: Op, raw: str, quoted: bool, span: Span) -> Value:
    """Type a comparison's value for ``spec`` (``raw`` is unescaped when ``quoted``)."""
    if not quoted and "*" in raw:
        raise WildcardError(
            "wildcards are only supported in `image_prefix:` and `object_prefix:` labels",
            span.start,
            span.end,
            hint='quote the value to search for a literal `*`: "a*b"',
        )
    match spec.type:
        case ValueType.SCORE:
            return _read_score(spec, op, raw, quoted, span)
        case ValueType.NUMBER:
            number = None if quoted else _number(raw, span)
            if number is None:
                raise _mismatch(spec, raw, quoted, span, example=_example(spec))
            if spec.bounds is not None and not spec.bounds[0] <= number.value <= spec.bounds[1]:
                raise _out_of_bounds(spec, op, number.value, raw, span)
            return number
        case ValueType.INTEGER:
            number = None if quoted else _number(raw, span)
            if number is None:
                raise _mismatch(spec, raw, quoted, span, example="width >= 640")
            if not INT32[0] <= number.value <= INT32[1]:
                raise InvalidValueError(
                    f"`{raw}` is out of range for `{spec.name}`", span.start, span.end
                )
            return number
        case ValueType.TEXT:
            _no_ordering(spec, op, span)
            return Text(raw)
        case ValueType.ENUM:
            _no_ordering(spec, op, span)
            if raw.lower() not in spec.choices:
                hint = _did_you_mean(raw, list(spec.choices))
                raise InvalidValueError(
                    f"`{raw}` is not a valid `{spec.name}`",
                    span.start,
                    span.end,
                    hint=(hint + " " if hint else "") + "choose from " + ", ".join(spec.choices),
                )
            return Text(raw.lower())
        case ValueType.DATE:
            date = read_date(raw, span)
            if date is None:
                raise _mismatch(spec, raw, quoted, span, example="uploaded_at >= 2024-01-31")
            return date
        case ValueType.DYNAMIC:
            number = None if quoted else _number(raw, span)
            if number is not None:
                return number
            if op.is_ordering:
                raise TypeMismatchError(
                    f"`{op}` compares numbers, but {_show(raw, quoted)} is text",
                    span.start,
                    span.end,
                    hint="compare metadata text with `=` or `!=`",
                )
            return Text(raw)


def _read_score(spec: FieldSpec, op: Op, raw: str, quoted: bool, span: Span) -> Value:
    try:
        band = Band(raw.lower())
    except ValueError:
        number = None if quoted else _number(raw, span)
        if number is None:
            example = f"{spec.name} >= {SCORE_EXAMPLE} or {spec.name} = {Band.HIGH}"
            raise _mismatch(spec, raw, quoted, span, example) from None
        return number
    if op.is_ordering:
        low, _, _ = BAND_RANGES[band]
        raise UnsupportedOperatorError(
            f"score bands take `=` or `!=`, not `{op}`",
            span.start,
            span.end,
            hint=f"compare with a number instead, e.g. `score {op} {low}`",
        )
    return ScoreBand(band)


def _example(spec: FieldSpec) -> str:
    if spec.bounds is not None and spec.bounds[1] <= 1:
        return f"{spec.name} < 0.01"
    return f"{spec.name} < 1024"


def geometry_example(name: str) -> str:
    """A comparison of the box-geometry attribute ``name`` worth showing in a hint."""
    return _example(ATTRIBUTES[name])


def _out_of_bounds(
    spec: FieldSpec, op: Op, value: float, raw: str, span: Span
) -> InvalidValueError:
    """A geometry value no box can have; for a share above 1, suggest it was a percentage."""
    assert spec.bounds is not None
    low, high = spec.bounds
    if high == math.inf:
        message = f"no box has a `{spec.name}` of {raw}: sizes are never below {low:g}"
        hint = f"sizes are in file pixels, e.g. `{_example(spec)}`"
    else:
        message = (
            f"no box has a `{spec.name}` of {raw}: it is the box's share of the image,"
            f" from {low:g} to {high:g}"
        )
        hint = f"e.g. `{_example(spec)}`"
        if high < value <= 100 * high:
            hint = f"for {raw}% write `{spec.name} {op} {value / 100:g}`"
    return InvalidValueError(message, span.start, span.end, hint=hint)


def _no_ordering(spec: FieldSpec, op: Op, span: Span) -> None:
    if op.is_ordering:
        raise UnsupportedOperatorError(
            f"`{spec.name}` is compared with `=` or `!=`, not `{op}`", span.start, span.end
        )


def _show(raw: str, quoted: bool) -> str:
    return f'"{raw}"' if quoted else f"`{raw}`"


def _mismatch(
    spec: FieldSpec, raw: str, quoted: bool, span: Span, example: str
) -> TypeMismatchError:
    hint = f"e.g. `{example}`"
    if quoted and (NUMBER_RE.fullmatch(raw) or _DATE_RE.fullmatch(raw)):
        hint = f"remove the quotes: {raw}"
    return TypeMismatchError(
        f"`{spec.name}` needs {spec.type.value}, not {_show(raw, quoted)}",
        span.start,
        span.end,
        hint=hint,
    )
