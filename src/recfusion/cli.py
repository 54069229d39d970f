"""The `recfusion` command.

recfusion config [--params params.yaml]     check params.yaml and print the typed config
recfusion stage NAME [--params params.yaml] run one pipeline stage (what dvc.yaml calls)
recfusion stages                            list the stages
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

import yaml

from recfusion.config import DEFAULT_PARAMS, load_config
from recfusion.stages.entry import guarded

DVC_YAML = Path("dvc.yaml")


def pipeline_stages(path: Path = DVC_YAML) -> list[str]:
    """The stage names of dvc.yaml, in order (the one definition of the pipeline); each runs
    the module recfusion.stages.<name>."""
    try:
        stages = yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path} not found: run recfusion from the project root") from e
    return list(stages)


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: int(args.func(args)))


if __name__ == "__main__":
    sys.exit(main())
