"""Reading a file of events for `recfusion events FILE`: JSON lines (one event object per
line, blank lines skipped) or one JSON list of event objects."""

from __future__ import annotations

import json
from pathlib import Path

from recfusion.data.io import DataFileError
from recfusion.serving.loading import read_text_file

MAX_EVENTS_FILE_BYTES = 50_000_000


def read_events(path: Path) -> list[object]:
    """The events in `path`, as parsed JSON values (serving/events.check_events checks them).

    Raises:
        DataFileError: the file is missing, too large, not UTF-8, or a line is not JSON (its
            line number named).
    """
    text = read_text_file(path, "events as JSON lines", MAX_EVENTS_FILE_BYTES)
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            events = json.loads(stripped)
        except (ValueError, RecursionError) as e:
            raise DataFileError(f"{path}: not a valid JSON list of events") from e
        return events if isinstance(events, list) else [events]
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except (ValueError, RecursionError) as e:
            raise DataFileError(
                f"{path}: line {n} is not a JSON object (one event per line)"
            ) from e
    return out
