"""Fresh events: checked like the raw events suite, then appended to the online store (the next
request of that user reads them) and to the event log on disk (nothing is lost).

An event is a JSON object with the canonical event columns:

    {"user_id": "u1", "item_id": "i7", "event_type": "click",
     "timestamp": "2026-12-03T10:15:00Z", "session_id": "s9", "value": null}

`user_id`, `item_id` and `event_type` are required; `timestamp` (ISO 8601; without a zone it is
UTC) defaults to the time of arrival; `session_id` and `value` are optional. The rules are the
events suite's (expectations/events.json): a known event type, an item of the model's
catalogue, a user id of at most `serving.max_user_id_chars` characters (a user the store does not
know yet is welcome: the events are all a new shopper has), other text of at most
`validation.max_text_chars`, a timestamp not in the future, a rating within
`validation.rating_min`..`rating_max`, and at most `serving.max_rows` events per batch. A batch is
all or nothing: the first bad event is named by its row and field and nothing is written.

The event log is Parquet, one file per accepted batch and day under
`data/live/events/day=YYYY-MM-DD/`, with the canonical columns; the next training run's ingest
takes it in (data/event_log.py).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recfusion.config import EVENT_TYPES, Config
from recfusion.data.event_log import EVENT_LOG_DIR, LOG_COLUMNS

FIELDS = LOG_COLUMNS
REQUIRED = ("user_id", "item_id", "event_type")
FUTURE_SLACK = pd.Timedelta(minutes=5)  # clocks disagree a little; more is a bad timestamp
EARLIEST = pd.Timestamp("1990-01-01", tz="UTC")
MAX_VALUE = 1e300  # larger numbers are not ratings or prices
# a date, optionally a time (seconds and fractions optional), optionally a zone
ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"
                      r"(Z|[+-]\d{2}:?\d{2})?)?")  # fmt: skip


class EventError(ValueError):
    """A bad event: the message names the row and the field, never echoes the request."""


@dataclass(frozen=True)
class EventRules:
    max_rows: int  # serving.max_rows
    max_user_id_chars: int  # serving.max_user_id_chars
    max_text_chars: int  # validation.max_text_chars
    rating_min: float
    rating_max: float
    items: pd.Index  # the model's catalogue ids

    @classmethod
    def of(cls, cfg: Config, item_ids: Sequence[str]) -> EventRules:
        v, s = cfg.validation, cfg.serving
        return cls(s.max_rows, s.max_user_id_chars, v.max_text_chars, v.rating_min,
                   v.rating_max, pd.Index(list(item_ids)))  # fmt: skip


def is_text(value: str) -> bool:
    """Whether `value` can be stored as UTF-8 (JSON allows lone surrogates such as \\ud800)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(row: dict, n: int, field: str, limit: int, required: bool) -> str | None:
    value = row.get(field)
    if value is None:
        if required:
            raise EventError(f"row {n}: {field} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"row {n}: {field} must be a non-empty string")
    if not is_text(value):
        raise EventError(f"row {n}: {field} is not valid Unicode text")
    if len(value) > limit:
        raise EventError(f"row {n}: {field} has {len(value)} characters; at most {limit} are "
                         "accepted")  # fmt: skip
    return value.strip()


def _timestamp(row: dict, n: int, now: pd.Timestamp) -> pd.Timestamp:
    value = row.get("timestamp")
    if value is None:
        return now
    if not isinstance(value, str) or not ISO_8601.fullmatch(value):
        raise EventError(f"row {n}: timestamp must be an ISO 8601 date and time such as "
                         "2026-12-03T10:15:00Z (no zone: UTC)")  # fmt: skip
    try:
        ts = pd.Timestamp(value)
    except (ValueError, OverflowError) as e:
        raise EventError(f"row {n}: timestamp is not a valid date and time") from e
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts > now + FUTURE_SLACK:
        raise EventError(f"row {n}: timestamp is in the future (after {now:%Y-%m-%dT%H:%M:%SZ})")
    if ts < EARLIEST:
        raise EventError(f"row {n}: timestamp is before {EARLIEST:%Y-%m-%d}")
    return ts


def check_events(rows: object, rules: EventRules, now: pd.Timestamp) -> pd.DataFrame:
    """The batch as a table of canonical events (timestamps UTC), every row checked.

    Raises:
        EventError: not a list of objects, too many rows, an unknown field, or the first bad
            value (its row and field named).
    """
    if not isinstance(rows, list):
        raise EventError("expected a list of events")
    if not rows:
        raise EventError("no events: send at least one")
    if len(rows) > rules.max_rows:
        raise EventError(f"{len(rows)} events in one batch; at most {rules.max_rows} are "
                         "accepted (serving.max_rows): split it")  # fmt: skip
    out = []
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise EventError(f"row {n}: an event must be an object with fields "
                             f"{', '.join(FIELDS)}")  # fmt: skip
        unknown = [f for f in row if f not in FIELDS]
        if unknown:
            name = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:37] + "..."
            raise EventError(f"row {n}: unknown field {name!r} (fields: {', '.join(FIELDS)})")
        user = _text(row, n, "user_id", rules.max_user_id_chars, True)
        item = _text(row, n, "item_id", rules.max_text_chars, True)
        kind = _text(row, n, "event_type", rules.max_text_chars, True)
        if kind not in EVENT_TYPES:
            raise EventError(f"row {n}: event_type must be one of {', '.join(EVENT_TYPES)}")
        if item not in rules.items:
            raise EventError(f"row {n}: item_id is not an item of the served model's catalogue")
        session = _text(row, n, "session_id", rules.max_text_chars, False)
        value = row.get("value")
        if value is not None:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not -MAX_VALUE <= value <= MAX_VALUE  # a 400-digit integer overflows isfinite
                or not math.isfinite(value)
            ):
                raise EventError(f"row {n}: value must be a finite number or null")
            if kind == "rating" and not rules.rating_min <= value <= rules.rating_max:
                raise EventError(f"row {n}: a rating's value must be from {rules.rating_min} to "
                                 f"{rules.rating_max} (validation.rating_min/max)")  # fmt: skip
        elif kind == "rating":
            raise EventError(f"row {n}: a rating needs a value")
        out.append((user, item, kind, _timestamp(row, n, now), session,
                    None if value is None else float(value)))  # fmt: skip
    table = pd.DataFrame(out, columns=list(FIELDS))
    table["timestamp"] = pd.to_datetime(table["timestamp"], utc=True)
    table["value"] = table["value"].astype("float64")
    return table


def append_to_log(events: pd.DataFrame, folder: Path = EVENT_LOG_DIR) -> list[Path]:
    """Writes the batch to the event log, one Parquet file per day it spans (a temporary name
    renamed into place, so a reader never sees half a file); returns the files."""
    written: list[Path] = []
    batch = f"{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
    try:
        for day, rows in events.groupby(events["timestamp"].dt.strftime("%Y-%m-%d"), sort=True):
            target = folder / f"day={day}" / f"{batch}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            try:
                rows.reset_index(drop=True).to_parquet(tmp, index=False)
                tmp.replace(target)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(target)
    except BaseException:
        for path in written:  # all or nothing: no day of a failed batch stays in the log
            path.unlink(missing_ok=True)
        raise
    return written
