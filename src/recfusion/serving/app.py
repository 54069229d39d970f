"""The HTTP server: recommendations and search, fresh events in, health. One FastAPI app that
any number of uvicorn worker processes run (`recfusion serve --workers 4`, `make serve`), all
reading and writing the same online store.

    POST /invocations  {"dataframe_records": [{"user_id", "k", "query"?, "exclude"?}, ...]}
                       -> {"predictions": [{"user_id", "rank", "item_id", "score", "reason"}, ...]}
                       (the body and the answer of `mlflow models serve`: clients need not change)
    POST /events       {"events": [event, ...]} (serving/events.py) -> {"accepted": n}
    GET  /health       -> {"status": "ok", "model": ..., "items": n, "store": ...}

An accepted batch of events is in the store when the answer returns: the user's next request
reads it. Every error is a 4xx with {"error": message} that names the row and field (showing
at most a 40-character prefix of a bad value, never the request): 415 for a body that is not `application/json`, 413 for one over
`serving.max_body_bytes`, 400 for JSON that does not parse or nests too deep, or a bad row. 503 says the
store cannot be read or written (the server's fault; try again), 500 is a bug.

The app is configured by environment variables (a uvicorn worker is a fresh process):
RECFUSION_MODEL (`workspace` or a model URI, default models:/recfusion@production) and
RECFUSION_PARAMS (default params.yaml; its `serving.store` is the store, relative to the
folder of that file).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from recfusion.config import EVENT_TYPES, load_config
from recfusion.data.event_log import EVENT_LOG_DIR
from recfusion.serving.events import EventError, EventRules, append_to_log, check_events
from recfusion.serving.loading import use_registry
from recfusion.serving.recommender import Recommender, RequestError
from recfusion.serving.store import StoreError, WritableStore, open_configured

log = logging.getLogger(__name__)

MODEL_ENV, PARAMS_ENV = "RECFUSION_MODEL", "RECFUSION_PARAMS"
DEFAULT_MODEL = "models:/recfusion@production"


class BadBody(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Served:
    """What the app serves: the recommender, its store, the event rules and the log folder."""

    recommender: Recommender
    store: WritableStore
    rules: EventRules
    log_dir: Path
    label: str  # what /health calls the model
    max_body_bytes: int  # serving.max_body_bytes of the server's params
    keep: Any = None  # a downloaded model's folder lives as long as the app


def load_served(model: str, params: Path) -> Served:
    """The recommender behind `model` ('workspace' or a model URI) over the store of `params`.

    Raises:
        StoreError: the store is missing or unreadable, or of another key than the model.
        TrackingUnavailable, WorkspaceMismatch: as `serving.loading.load_model`.
    """
    project = params.parent
    cfg = load_config(params)
    store = open_configured(cfg.serving.store, project)
    keep = None
    if model == "workspace":
        root = project
    else:
        from recfusion.serving.pyfunc import local_workspace

        use_registry(params)
        keep = tempfile.TemporaryDirectory(prefix="recfusion-serve-")
        root = local_workspace(model, Path(keep.name))
    recommender = Recommender.load(root, store)
    recommender.warm_up()  # before the first request, not during it
    rules = EventRules.of(recommender.cfg, recommender.package.catalog.item_ids.tolist())
    return Served(recommender, store, rules, project / EVENT_LOG_DIR, model,
                  cfg.serving.max_body_bytes, keep)  # fmt: skip


async def json_body(request: Request, max_bytes: int) -> Any:
    """The request's JSON body.

    Raises:
        BadBody: 415 not application/json; 413 larger than `max_bytes`; 400 not JSON, or nested
            too deep for the parser.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise BadBody(415, "send the body as JSON with Content-Type: application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BadBody(413, f"the body is larger than {max_bytes} bytes; split the request")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BadBody(413, f"the body is larger than {max_bytes} bytes; split the request")
    try:
        return json.loads(body)
    except RecursionError as e:
        raise BadBody(400, "the JSON body nests too deep") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise BadBody(400, "the body is not valid JSON") from e


def append_events(store: WritableStore, table: pd.DataFrame, log_dir: Path) -> int:
    """Appends checked events to the store and the event log, all or nothing: the log is written
    inside the store's transaction; a failure rolls the store back and removes the log's files.

    Raises:
        StoreError: either could not take them (the message says which; nothing was written).
    """
    written: list[Path] = []
    try:
        return store.append(table, then=lambda: written.extend(append_to_log(table, log_dir)))
    except Exception as e:
        for path in written:  # written, then the commit failed: the store took nothing
            path.unlink(missing_ok=True)
        if isinstance(e, StoreError):
            raise
        raise StoreError(f"the event log could not take the events: {e}") from e


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a JSON request body (the endpoints parse the body themselves, so that every
    refusal is theirs: 415, 413, 400 with the row and field)."""
    errors = {"content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}  # fmt: skip
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {str(code): {"description": why, **errors} for code, why in (
            (400, "a malformed body or row"), (413, "body too large"),
            (415, "not application/json"), (503, "the online store is unavailable"))},
    }  # fmt: skip


TEXT = {"type": "string", "minLength": 1}
INVOCATIONS = _body({
    "type": "object", "required": ["dataframe_records"], "additionalProperties": False,
    "properties": {"dataframe_records": {"type": "array", "items": {
        "type": "object", "required": ["user_id", "k"], "additionalProperties": False,
        "properties": {"user_id": TEXT, "k": {"type": "integer", "minimum": 1},
                       "query": {"type": "string"},
                       "exclude": {"type": "array", "items": {"type": "string"}}}}}}})  # fmt: skip
EVENTS = _body({
    "type": "object", "required": ["events"], "additionalProperties": False,
    "properties": {"events": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["user_id", "item_id", "event_type"],
        "additionalProperties": False,
        "properties": {"user_id": TEXT, "item_id": TEXT,
                       "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
                       "timestamp": {"type": "string", "format": "date-time"},
                       "session_id": {"type": ["string", "null"]},
                       "value": {"type": ["number", "null"]}}}}}})  # fmt: skip


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(served: Served | Callable[[], Served] | None = None) -> FastAPI:
    """The app over `served` (or what `load_served` gives for RECFUSION_MODEL and
    RECFUSION_PARAMS when None: uvicorn's `--factory` calls this with no argument)."""
    if served is None:
        model = os.environ.get(MODEL_ENV, DEFAULT_MODEL)
        params = Path(os.environ.get(PARAMS_ENV, "params.yaml")).resolve()
        served = load_served(model, params)
    elif callable(served):
        served = served()
    s: Served = served
    lock = threading.Lock()  # one request at a time per worker: workers give the parallelism

    def locked(fn: Callable[..., Any], *args: Any) -> Any:
        with lock:
            return fn(*args)

    app = FastAPI(title="recfusion", version="1",
                  description=__doc__.split("\n\n")[0])  # fmt: skip

    @app.exception_handler(BadBody)
    async def bad_body(request: Request, e: BadBody) -> JSONResponse:
        return _error(e.status, str(e))

    @app.exception_handler(StoreError)
    async def store_down(request: Request, e: StoreError) -> JSONResponse:
        log.error("online store: %s", e)
        return _error(503, "the online store is unavailable; try again shortly")

    @app.get("/health")
    def health() -> dict[str, Any]:
        s.store.lookup([])  # raises StoreError (503) when the store cannot be read
        return {"status": "ok", "model": s.label, "items": len(s.recommender.package.catalog),
                "store": s.store.location}  # fmt: skip

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/invocations", openapi_extra=INVOCATIONS)
    async def invocations(request: Request) -> Response:
        body = await json_body(request, s.max_body_bytes)
        if not isinstance(body, dict) or not isinstance(body.get("dataframe_records"), list):
            return _error(400, 'send {"dataframe_records": [{"user_id": ..., "k": ...}, ...]}')
        records = body["dataframe_records"]
        if not all(isinstance(r, dict) for r in records):
            return _error(400, "each of dataframe_records must be an object (one request row)")
        if not records:
            return Response(b'{"predictions": []}', media_type="application/json")
        frame = pd.DataFrame(records, dtype=object)
        try:
            # blocking work (models, the store) runs off the event loop, one request at a time
            answer = await run_in_threadpool(locked, s.recommender.recommend, frame)
        except RequestError as e:
            return _error(400, str(e))
        rows = answer.to_json(orient="records")
        return Response(f'{{"predictions": {rows}}}', media_type="application/json")

    @app.post("/events", openapi_extra=EVENTS)
    async def events(request: Request) -> JSONResponse:
        body = await json_body(request, s.max_body_bytes)
        if not isinstance(body, dict) or "events" not in body or len(body) != 1:
            return _error(400, 'send {"events": [{"user_id": ..., "item_id": ..., '
                               '"event_type": ...}, ...]}')  # fmt: skip
        try:
            table = check_events(body["events"], s.rules, pd.Timestamp.now(tz="UTC"))
        except EventError as e:
            return _error(400, str(e))
        await run_in_threadpool(append_events, s.store, table, s.log_dir)
        return JSONResponse({"accepted": len(table)})

    return app
