"""Carrying out registry decisions with MLflow: aliases are the stages, tags the record.

- Aliases `candidate` (newest registered), `staging` (passed the gate), `production` (the
  champion). MLflow's deprecated stage API is not used.
- Each version's tag `status` is candidate / staging / production / archived / rejected.
- Every alias move is kept as a registered-model tag `move.NNNNNN` holding JSON {time, user,
  alias, version, previous, reason, forced}: MLflow keeps no alias history of its own.

Moves take a file lock next to a SQLite store, so two promotions at once leave the aliases and
statuses consistent; a tracking server shared by several machines needs its own serialisation
(see docs/operations.md).
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

ALIASES = ("candidate", "staging", "production")
STATUSES = ("candidate", "staging", "production", "archived", "rejected")
STATUS = "status"
MOVE_PREFIX = "move."


class RegistryError(RuntimeError):
    """A registry request that cannot be carried out; the message says why and what to do."""


@dataclass(frozen=True)
class Move:
    time: float
    user: str
    alias: str
    version: str
    previous: str | None
    reason: str
    forced: bool
    kind: str = "move"  # "rollback" undoes the production move before it; "review-rejected"
    # records a reviewer's refusal (no alias moved)


@contextmanager
def registry_lock(tracking_uri: str, timeout: float = 60.0) -> Iterator[None]:
    """Serialises alias moves against a SQLite store (a no-op for a tracking server)."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    with FileLock(str(db) + ".lock", timeout=timeout):
        yield


def holder(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version holding `alias`, or None."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def status_of(client: MlflowClient, name: str, version: str) -> str:
    return str(client.get_model_version(name, version).tags.get(STATUS, "unknown"))


def history(client: MlflowClient, name: str) -> list[Move]:
    """Every recorded alias move, oldest first."""
    tags = client.get_registered_model(name).tags
    moves = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(MOVE_PREFIX)]
    return [Move(**m) for m in moves]


def _record(client: MlflowClient, name: str, move: Move) -> None:
    tags = client.get_registered_model(name).tags
    n = sum(k.startswith(MOVE_PREFIX) for k in tags) + 1
    client.set_registered_model_tag(name, f"{MOVE_PREFIX}{n:06d}", json.dumps(move.__dict__))


def _move(client: MlflowClient, name: str, alias: str, version: str, reason: str,
          forced: bool = False, kind: str = "move", user: str | None = None) -> str | None:  # fmt: skip
    """Points `alias` at `version`, records the move; returns the previous holder."""
    previous = holder(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    _record(client, name, Move(time.time(), user or getpass.getuser(), alias, version, previous,
                               reason, forced, kind))  # fmt: skip
    return previous


def production_line(moves: list[Move]) -> list[str]:
    """The production versions still to fall back on, oldest first (the last is current):
    every production move pushes its version, a rollback pops the one it undid."""
    line: list[str] = []
    for m in moves:
        if m.alias != "production":
            continue
        if m.kind == "rollback":
            line.pop()
        elif m.kind == "move":
            line.append(m.version)
    return line


def recorded_holders(moves: list[Move]) -> dict[str, str | None]:
    """Where recfusion's recorded moves left each alias: the last move's version, except that a
    production move takes `staging` off the promoted version (as `promote` does)."""
    held: dict[str, str | None] = {}
    for m in moves:
        if m.kind not in ("move", "rollback"):
            continue  # a review refusal moves no alias
        held[m.alias] = m.version
        if m.alias == "production" and held.get("staging") == m.version:
            held["staging"] = None
    return held


def unrecorded_moves(moves: list[Move], holders: dict[str, str | None]) -> list[str]:
    """One warning per alias whose current holder (`holders`) is not where recfusion's last
    recorded move left it: someone moved it outside recfusion, e.g. with the MLflow UI."""
    expected = recorded_holders(moves)
    warnings = []
    for alias in sorted(set(expected) | {a for a, v in holders.items() if v is not None}):
        now, then = holders.get(alias), expected.get(alias)
        if now == then:
            continue
        on = f"on version {now}" if now else "on no version"
        if alias not in expected:
            recorded = "recfusion never recorded a move of it"
        elif then:
            recorded = f"recfusion's last recorded move put it on version {then}"
        else:
            recorded = "recfusion's last recorded move took it off"
        warnings.append(
            f"alias {alias} is {on} but {recorded}: it was moved outside recfusion "
            "(MLflow UI?), bypassing the gate and the history"
        )
    return warnings


def alias_warnings(client: MlflowClient, name: str) -> list[str]:
    """`unrecorded_moves` for the registry's current aliases (recfusion's and any recorded)."""
    moves = history(client, name)
    aliases = set(ALIASES) | {m.alias for m in moves}
    return unrecorded_moves(moves, {a: holder(client, name, a) for a in sorted(aliases)})


def history_rows(moves: list[Move]) -> list[dict[str, str]]:
    """The history as table rows, oldest first: one row per move, times in ISO 8601 UTC."""
    return [
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m.time)),
            "alias": m.alias,
            "version": m.version,
            "previous": m.previous or "-",
            "user": m.user,
            "kind": m.kind,
            "forced": "yes" if m.forced else "no",
            "reason": " ".join(m.reason.split()) or "-",  # one line, however many it had
        }
        for m in moves
    ]


def mark_candidate(client: MlflowClient, name: str, version: str, tracking_uri: str) -> None:
    """A newly registered version: alias `candidate`, status candidate."""
    with registry_lock(tracking_uri):
        client.set_model_version_tag(name, version, STATUS, "candidate")
        _move(client, name, "candidate", version, "registered by the pipeline")


def reject(client: MlflowClient, name: str, version: str, reason: str) -> None:
    client.set_model_version_tag(name, version, STATUS, "rejected")
    client.set_model_version_tag(name, version, "rejected_reason", reason[:4900])


def review_reject(client: MlflowClient, name: str, version: str, reason: str, tracking_uri: str,
                  user: str | None = None) -> None:  # fmt: skip
    """A reviewer refused `version` for production: status rejected, recorded in the history."""
    with registry_lock(tracking_uri):
        reject(client, name, version, f"review: {reason}")
        _record(client, name, Move(time.time(), user or getpass.getuser(), "production", version,
                                   holder(client, name, "production"), reason, False,
                                   "review-rejected"))  # fmt: skip


def promote(client: MlflowClient, name: str, version: str, to: str, reason: str,
            tracking_uri: str, force: bool = False, user: str | None = None) -> str | None:  # fmt: skip
    """Moves alias `to` (staging or production) onto `version`.

    Promotion to production archives the previous holder and takes the staging alias off the
    promoted version. Returns the previous holder of `to`.

    Raises:
        RegistryError: an unknown target or version, or a version that failed the gate
            promoted without `force` and a reason.
    """
    if to not in ("staging", "production"):
        raise RegistryError(f"can only promote to staging or production, not '{to}'")
    if force and not reason.strip():
        raise RegistryError("--force needs --reason: say why the gate is overridden")
    with registry_lock(tracking_uri):
        try:
            status = status_of(client, name, version)
        except MlflowException as e:
            raise RegistryError(f"model '{name}' has no version {version}") from e
        if status == "rejected" and not force:
            why = client.get_model_version(name, version).tags.get("rejected_reason", "")
            raise RegistryError(f"version {version} failed the gate ({why}); use --force "
                                "--reason '...' to override, which is recorded")  # fmt: skip
        previous = _move(client, name, to, version, reason or f"promoted to {to}", force,
                         user=user)  # fmt: skip
        client.set_model_version_tag(name, version, STATUS, to)
        if force:
            client.set_model_version_tag(name, version, "override_reason", reason)
        if to == "production":
            if holder(client, name, "staging") == version:
                client.delete_registered_model_alias(name, "staging")
            if previous and previous != version:
                client.set_model_version_tag(name, previous, STATUS, "archived")
    return previous


def rollback(client: MlflowClient, name: str, tracking_uri: str, reason: str = "") -> str:
    """Puts the production version before the current one back; returns its version.

    Raises:
        RegistryError: there is no production version, or none before it.
    """
    with registry_lock(tracking_uri):
        current = holder(client, name, "production")
        if current is None:
            raise RegistryError("no version holds 'production': nothing to roll back")
        line = production_line(history(client, name))
        if line and line[-1] != current:
            raise RegistryError(
                f"alias production is on version {current} but recfusion's last recorded move "
                f"put it on version {line[-1]}: it was moved outside recfusion. Record it first "
                f"(recfusion registry promote {current} --to production --reason '...'), "
                "then roll back"
            )
        if len(line) < 2:
            raise RegistryError(f"version {current} is the first production version: "
                                "there is no earlier one to roll back to")  # fmt: skip
        target = line[-2]
        _move(client, name, "production", target, reason or f"rollback from version {current}",
              kind="rollback")  # fmt: skip
        client.set_model_version_tag(name, target, STATUS, "production")
        client.set_model_version_tag(name, current, STATUS, "archived")
    return target


def versions(client: MlflowClient, name: str,
             metrics: tuple[str, ...] = ("ndcg_at_10", "recall_at_10", "coverage_at_10")
             ) -> list[dict[str, str]]:  # fmt: skip
    """One row per version, newest first: status, aliases, gate result, key run metrics."""
    rows = []
    for found in client.search_model_versions(f"name = '{name}'"):
        mv = client.get_model_version(name, found.version)  # the search leaves aliases out
        run = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        rows.append({
            "version": str(mv.version),
            "status": mv.tags.get(STATUS, "unknown"),
            "aliases": ",".join(sorted(mv.aliases)) or "-",
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1000)),
            "gate": {"true": "passed", "false": "failed"}.get(mv.tags.get("gate.passed", ""), "-"),
            **{m: f"{run[m]:.4f}" if m in run else "-" for m in metrics},
        })  # fmt: skip
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def format_table(rows: list[dict[str, str]]) -> str:
    """Rows as an aligned plain-text table."""
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols).rstrip()]
    lines += ["  ".join(str(r[c]).ljust(width[c]) for c in cols).rstrip() for r in rows]
    return "\n".join(lines) + "\n"
