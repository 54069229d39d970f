"""The `recfusion` command.

recfusion config [--params params.yaml]     check params.yaml and print the typed config
recfusion stage NAME [--params params.yaml] run one pipeline stage (what dvc.yaml calls)
recfusion stages                            list the stages
recfusion recommend --user ID | --users FILE --k N [--model URI] [--out FILE]
                    [--exclude FILE] [--history train,val]
                                            recommendations from the workspace or a registry URI;
                                            --history scores a held-out split offline
recfusion search "QUERY" [--user ID] [--k N] [--model URI] [--out FILE]
                                            hybrid search, personalised when the user is known
recfusion serve [--model URI] [--workers N] [--port 5001]
                                            the HTTP server: /invocations, /events, /health
recfusion events FILE                       append fresh events (JSON lines) to the online store
recfusion store-server [--stop]             start or stop the local Redis of serving.store
recfusion forget USER_ID                    remove a user from the store, the event log and
                                            (at the next ingest) the training data
recfusion registry list | history           registered versions; every alias move
recfusion registry promote VERSION --to staging|production [--force --reason R]
recfusion registry rollback [--reason R]    put the previous production version back
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from recfusion.config import DEFAULT_PARAMS, RegistryConfig, load_config
from recfusion.orchestration.dvc_stage import pipeline_stages
from recfusion.registry import moves
from recfusion.registry.moves import RegistryError, format_table
from recfusion.registry.tracking import TrackingUnavailable, connect
from recfusion.serving.loading import (
    WORKSPACE,
    load_model,
    parse_history,
    read_exclusions,
    read_user_ids,
)
from recfusion.stages.entry import guarded

ANONYMOUS = "anonymous"  # the user id of a search without --user (never a known user)


def _config(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)
    sys.stdout.write(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    return 0


def _stage(args: argparse.Namespace) -> int:
    names = pipeline_stages()
    if args.name not in names:
        raise ValueError(f"unknown stage '{args.name}' (stages: {', '.join(names)})")
    module = importlib.import_module(f"recfusion.stages.{args.name}")
    return int(module.main(["--params", str(args.params)]))


def _stages(_: argparse.Namespace) -> int:
    for name in pipeline_stages():
        doc = (importlib.import_module(f"recfusion.stages.{name}").__doc__ or "").strip()
        sys.stdout.write(f"{name:10s} {doc.splitlines()[0] if doc else ''}\n")
    return 0


def _client(args: argparse.Namespace) -> tuple[MlflowClient, RegistryConfig]:
    rc = load_config(args.params).registry
    return connect(rc.tracking_uri), rc


def _registry(args: argparse.Namespace) -> int:
    client, rc = _client(args)
    name = rc.model_name
    if args.action == "list":
        sys.stdout.write(format_table(moves.versions(client, name)))
        for warning in moves.alias_warnings(client, name):
            sys.stderr.write(f"warning: {warning}\n")
    elif args.action == "history":
        sys.stdout.write(format_table(moves.history_rows(moves.history(client, name))))
    elif args.action == "promote":
        if args.version is None or args.to is None:
            raise ValueError("usage: recfusion registry promote VERSION --to staging|production")
        previous = moves.promote(client, name, args.version, args.to, args.reason or "",
                                 rc.tracking_uri, args.force)  # fmt: skip
        sys.stdout.write(f"{name} version {args.version} is now @{args.to}"
                         f" (was: {previous or 'none'})\n")  # fmt: skip
    else:
        target = moves.rollback(client, name, rc.tracking_uri, args.reason or "")
        sys.stdout.write(f"{name} @production is back on version {target}\n")
    return 0


def _recommend(args: argparse.Namespace) -> int:
    if (args.user is None) == (args.users is None):
        raise ValueError("give exactly one of --user ID or --users FILE (one user id per line)")
    out_format = answer_format(args.out)
    history = parse_history(args.history) if args.history else None
    users = [args.user] if args.user else read_user_ids(args.users)
    exclude = read_exclusions(args.exclude) if args.exclude else {}
    request = pd.DataFrame({"user_id": users, "k": args.k,
                            "exclude": [exclude.get(u, []) for u in users]})  # fmt: skip
    model = load_model(args.model, args.params, history)
    if history:  # say what the lists know: later events are neither used nor excluded
        known = "+".join(getattr(model, "history", history))
        sys.stderr.write(f"users known by their {known} events\n")
    return _write_answer(model.predict(request), args.out, out_format)


# --out FILE: the format its extension names
OUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}


def answer_format(out: Path | None) -> str | None:
    """The format `--out` names by its extension (None: print a table), checked before any model
    loads.

    Raises:
        ValueError: an extension that names no format recfusion writes.
    """
    if out is None:
        return None
    if out.suffix.lower() not in OUT_FORMATS:
        raise ValueError(f"--out {out}: write .csv, .parquet or .jsonl (.json: JSON lines), "
                         f"not '{out.suffix or 'no extension'}'")  # fmt: skip
    return OUT_FORMATS[out.suffix.lower()]


def _write_answer(answer: pd.DataFrame, out: Path | None, out_format: str | None) -> int:
    """Prints the answer table, or writes it to `out` in `out_format`."""
    if out is None:
        sys.stdout.write(answer.to_string(index=False) + "\n")
        return 0
    if out_format == "parquet":
        answer.to_parquet(out, index=False)
    elif out_format == "jsonl":
        answer.to_json(out, orient="records", lines=True)
    else:
        answer.to_csv(out, index=False)
    sys.stdout.write(f"{len(answer)} rows written to {out}\n")
    return 0


def _search(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise ValueError(
            'give a query: recfusion search "waterproof boots" [--user ID] '
            "(recommendations without a query: recfusion recommend --user ID)"
        )
    out_format = answer_format(args.out)
    request = pd.DataFrame({"user_id": [args.user or ANONYMOUS], "k": [args.k],
                            "query": [args.query]})  # fmt: skip
    return _write_answer(load_model(args.model, args.params).predict(request), args.out, out_format)


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from recfusion.serving.app import MODEL_ENV, PARAMS_ENV, load_served

    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: give at least 1")
    os.environ[MODEL_ENV] = args.model
    os.environ[PARAMS_ENV] = str(args.params.resolve())
    load_served(args.model, args.params.resolve())  # fails here, once, on a missing model/store
    sys.stderr.write(f"serving {args.model} on http://{args.host}:{args.port} with "
                     f"{args.workers} worker(s)\n")  # fmt: skip
    uvicorn.run("recfusion.serving.app:create_app", factory=True, host=args.host,
                port=args.port, workers=args.workers, log_level="warning")  # fmt: skip
    return 0


def _events(args: argparse.Namespace) -> int:
    from recfusion.data.event_log import EVENT_LOG_DIR
    from recfusion.serving.app import append_events
    from recfusion.serving.events import EventRules, check_events
    from recfusion.serving.events_file import read_events
    from recfusion.serving.package import PACKAGE_DIR, load_package
    from recfusion.serving.store import open_configured

    project = args.params.resolve().parent
    cfg = load_config(args.params)
    rules = EventRules.of(cfg, load_package(project / PACKAGE_DIR).catalog.item_ids.tolist())
    table = check_events(read_events(args.file), rules, pd.Timestamp.now(tz="UTC"))
    store = open_configured(cfg.serving.store, project)
    append_events(store, table, project / EVENT_LOG_DIR)
    sys.stdout.write(f"{len(table)} events appended to {store.location} and the event log "
                     f"({EVENT_LOG_DIR})\n")  # fmt: skip
    return 0


def _store_server(args: argparse.Namespace) -> int:
    from recfusion.serving.redis_server import REDIS_DIR, ensure_local, local_port, stop_local
    from recfusion.serving.redis_store import is_redis, shown

    project = args.params.resolve().parent
    spec = load_config(args.params).serving.store.strip()
    if not is_redis(spec) or local_port(spec) is None:
        raise ValueError(f"serving.store is {spec!r}, not a Redis on this machine "
                         "(redis://127.0.0.1:PORT/DB): nothing to start or stop")  # fmt: skip
    if args.stop:
        said = "stopped" if stop_local(spec) else "was not running"
    else:
        started = ensure_local(spec, project / REDIS_DIR)
        said = f"started (data in {REDIS_DIR})" if started else "already running"
    sys.stdout.write(f"Redis at {shown(spec)}: {said}\n")
    return 0


def _forget(args: argparse.Namespace) -> int:
    from recfusion.data.event_log import EVENT_LOG_DIR
    from recfusion.data.forget import FORGET_FILE
    from recfusion.privacy import pseudonym_key
    from recfusion.serving.forget import forget_user
    from recfusion.serving.store import open_configured

    if not args.user_id.strip():
        raise ValueError("give the user id to forget: recfusion forget USER_ID")
    project = args.params.resolve().parent
    cfg = load_config(args.params)
    store = open_configured(cfg.serving.store, project)
    done = forget_user(args.user_id.strip(), store, project / EVENT_LOG_DIR,
                       project / FORGET_FILE, pseudonym_key(project))  # fmt: skip
    sys.stdout.write(done.report(FORGET_FILE) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recfusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("config", help="check params.yaml and print the typed configuration")
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    p.set_defaults(func=_config)
    p = sub.add_parser("stage", help="run one pipeline stage")
    p.add_argument("name", help="a stage of dvc.yaml (see `recfusion stages`)")
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    p.set_defaults(func=_stage)
    p = sub.add_parser("stages", help="list the pipeline stages")
    p.set_defaults(func=_stages)
    p = sub.add_parser("recommend", help="top-k recommendations with reasons")
    p.add_argument("--user", help="one user id")
    p.add_argument("--users", type=Path, help="a file with one user id per line")
    p.add_argument("--k", type=int, default=10, help="recommendations per user")
    p.add_argument("--model", default=WORKSPACE,
                   help="'workspace' (the pipeline's outputs here) or an MLflow model URI such "
                        "as models:/recfusion@production")  # fmt: skip
    p.add_argument(
        "--out",
        type=Path,
        help="write the answer here (.csv, .parquet or .jsonl) instead of printing",
    )
    p.add_argument("--exclude", type=Path,
                   help="items not to recommend, per user: a CSV or Parquet table with columns "
                        "user_id, item_id")  # fmt: skip
    p.add_argument("--history",
                   help="know users by these splits only, e.g. train,val to score the test split "
                        "offline (default: every split, as the served model does)")  # fmt: skip
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    p.set_defaults(func=_recommend)
    p = sub.add_parser("search", help="hybrid product search with reasons")
    p.add_argument("query", help="the search text")
    p.add_argument("--user", help="the searching user's id (personalises the order)")
    p.add_argument("--k", type=int, default=10, help="results")
    p.add_argument("--model", default=WORKSPACE, help="as for recommend")
    p.add_argument(
        "--out",
        type=Path,
        help="write the answer here (.csv, .parquet or .jsonl) instead of printing",
    )
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    p.set_defaults(func=_search)
    p = sub.add_parser("serve", help="the HTTP server: recommendations, search, /events, /health")
    p.add_argument("--model", default="models:/recfusion@production",
                   help="an MLflow model URI, or 'workspace' (this checkout's pipeline outputs)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the store")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (loopback)")
    p.add_argument("--port", type=int, default=5001)
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    p.set_defaults(func=_serve)
    p = sub.add_parser("events", help="append fresh events to the online store and event log")
    p.add_argument("file", type=Path,
                   help="events as JSON lines (one object per line) or one JSON list")  # fmt: skip
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    p.set_defaults(func=_events)
    p = sub.add_parser("forget", help="remove a user from the online store and the event log, "
                                      "and from the training data at the next ingest")  # fmt: skip
    p.add_argument("user_id")
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    p.set_defaults(func=_forget)
    p = sub.add_parser("store-server", help="start (or --stop) the local Redis server that "
                                            "serving.store names")  # fmt: skip
    p.add_argument("--stop", action="store_true", help="shut it down instead")
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    p.set_defaults(func=_store_server)
    p = sub.add_parser("registry", help="the model registry: list, history, promote, rollback")
    p.add_argument("action", choices=["list", "history", "promote", "rollback"])
    p.add_argument("version", nargs="?", help="promote: the version")
    p.add_argument("--to", choices=["staging", "production"], help="promote: the alias")
    p.add_argument("--force", action="store_true", help="promote a version that failed the gate")
    p.add_argument("--reason", help="why (required with --force; recorded in the history)")
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    p.set_defaults(func=_registry)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return guarded(lambda: int(args.func(args)))
    except (RegistryError, TrackingUnavailable) as e:
        sys.stderr.write(f"recfusion: {e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
