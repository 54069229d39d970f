"""End to end: the HTTP server (`recfusion serve`, two worker processes) on a copy of the trained
tiny workspace, once over each online store (the SQLite file, and a real Redis server filled by
the materialize stage). Events posted to one worker change the next answer from either worker;
bad requests and events get a 4xx that names the row and field; nothing is written for a refused
batch; accepted batches are in the event log on disk."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
import yaml

from recfusion.serving.store import open_store, store_target
from tests.fuzz import fuzz_api
from tests.workspace import BIN, copy_workspace, free_port, sh

pytestmark = pytest.mark.slow

MAX_BODY = 200_000  # serving.max_body_bytes of the copy: a larger body gets a 413


def call(url: str, body: bytes | None = None, content_type: str | None = "application/json",
         ) -> tuple[int, dict]:  # fmt: skip
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(
        url, body, headers, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def post(url: str, payload: object) -> tuple[int, dict]:
    return call(url, json.dumps(payload).encode())


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def server(request, trained_workspace, tmp_path_factory):
    snapshot, env, _ = trained_workspace
    dest = copy_workspace(snapshot, tmp_path_factory.mktemp("live"))
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["serving"]["max_body_bytes"] = MAX_BODY
    if request.param == "redis":
        import redis

        params["serving"]["store"] = request.getfixturevalue("redis_url")
        redis.Redis.from_url(params["serving"]["store"]).flushdb()
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if request.param == "redis":  # the pipeline's own stage fills Redis
        said = sh([str(BIN / "recfusion"), "stage", "materialize"], dest, env)
        assert "materialize" in said
    port = free_port()
    proc = subprocess.Popen([str(BIN / "recfusion"), "serve", "--model", "workspace",
                             "--workers", "2", "--port", str(port)], cwd=dest, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, f"recfusion serve exited: {proc.stderr.read()}"
            try:
                if call(f"{url}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "the server did not come up within 300 s"
            time.sleep(1)
        yield url, dest, env, store_target(params["serving"]["store"], dest)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def recommend(url: str, users: list[str], k: int = 10) -> pd.DataFrame:
    status, body = post(f"{url}/invocations",
                        {"dataframe_records": [{"user_id": u, "k": k} for u in users]})  # fmt: skip
    assert status == 200, body
    return pd.DataFrame(body["predictions"])


def test_posted_events_change_the_next_answer(server) -> None:
    url, dest, env, target = server
    status, health = call(f"{url}/health")
    assert status == 200 and health["status"] == "ok" and health["items"] > 0
    items = pd.read_parquet(dest / "data/prepared/items.parquet")
    top = items.set_index("item_id")["category"].astype(str).str.split(">").str[0]
    user = str(pd.read_parquet(dest / "data/prepared/test.parquet")["user_id"].iloc[0])
    new = "shopper-new-to-the-store"
    before = recommend(url, [user, new])
    assert set(before.loc[before["user_id"] == new, "reason"]) == {"popular right now"}
    mine = before[before["user_id"] == user]
    shares = top[mine["item_id"]].value_counts()
    target = min(sorted(set(top)), key=lambda c: shares.get(c, 0))
    picked = items[(top.to_numpy() == target) & items["in_stock"].to_numpy()]["item_id"][:5]
    events = [{"user_id": u, "item_id": str(i), "event_type": "click"}
              for u in (user, new) for i in picked]  # fmt: skip
    status, body = post(f"{url}/events", {"events": events})
    assert status == 200 and body == {"accepted": len(events)}
    after = recommend(url, [user, new])  # either worker: both read the one store
    for who in (user, new):
        was = float(np.mean(top[before.loc[before["user_id"] == who, "item_id"]] == target))
        now = float(np.mean(top[after.loc[after["user_id"] == who, "item_id"]] == target))
        assert now > was, (who, target, was, now)
        assert not set(after.loc[after["user_id"] == who, "item_id"]) & set(picked)
    assert set(after.loc[after["user_id"] == new, "reason"]) != {"popular right now"}
    # the batch is in the event log on disk, as canonical events
    logged = pd.concat([pd.read_parquet(p) for p in (dest / "data/live/events").rglob("*.parquet")])
    assert sorted(zip(logged["user_id"], logged["item_id"], strict=True)) == sorted(
        (e["user_id"], e["item_id"]) for e in events)  # fmt: skip
    assert str(logged["timestamp"].dtype).startswith("datetime64")


def test_bad_requests_and_events_get_a_4xx_and_write_nothing(server) -> None:
    url, dest, env, target = server

    def stored() -> int:
        return open_store(target).count_events()

    logs = lambda: sorted((dest / "data/live").rglob("*.parquet"))  # noqa: E731
    count, files = stored(), logs()
    good = {"user_id": "u1", "item_id": "nope", "event_type": "click"}
    item = str(pd.read_parquet(dest / "data/prepared/items.parquet")["item_id"].iloc[0])
    cases = {
        "no content type": (call(f"{url}/events", b'{"events": []}', None), 415, "Content-Type"),
        "text/plain": (call(f"{url}/invocations", b"{}", "text/plain"), 415, "application/json"),
        "not JSON": (call(f"{url}/events", b"{nope"), 400, "not valid JSON"),
        "deep nesting": (call(f"{url}/invocations", b"[" * 5000 + b"]" * 5000), 400, "nests"),
        "too large": (call(f"{url}/events", b" " * (MAX_BODY + 1)), 413, "larger than"),
        "unknown item": (post(f"{url}/events", {"events": [
            {"user_id": "u1", "item_id": item, "event_type": "click"}, good]}), 400,
            "row 1: item_id is not an item"),
        "bad type": (post(f"{url}/events", {"events": [{**good, "item_id": item,
                                                        "event_type": "wink"}]}), 400,
                     "row 0: event_type must be one of"),
        "future": (post(f"{url}/events", {"events": [{**good, "item_id": item,
                                                      "timestamp": "2999-01-01T00:00:00Z"}]}),
                   400, "row 0: timestamp is in the future"),
        "k as text": (post(f"{url}/invocations", {"dataframe_records": [
            {"user_id": "u1", "k": "5"}]}), 400, "row 0: k must be an integer"),
        "k missing in row 1": (post(f"{url}/invocations", {"dataframe_records": [
            {"user_id": "u1", "k": 5}, {"user_id": "u2"}]}), 400, "row 1: k must be"),
    }  # fmt: skip
    for name, ((status, body), expected, said) in cases.items():
        assert status == expected, (name, status, body)
        assert said in body["error"], (name, body)
        assert "5000" not in body["error"] and "wink" not in body["error"], (name, body)
    assert stored() == count and logs() == files  # the refused batches wrote nothing
    # the command line takes a file of events through the same checks into the same store
    path = dest / "more.jsonl"
    path.write_text(json.dumps({"user_id": "cli-user", "item_id": item, "event_type": "view"})
                    + "\n")  # fmt: skip
    said = sh([str(BIN / "recfusion"), "events", str(path)], dest, env)
    assert "1 events appended" in said and stored() == count + 1


def test_forget_removes_a_user_while_the_server_runs(server) -> None:
    url, dest, env, target = server
    item = str(pd.read_parquet(dest / "data/prepared/items.parquet")["item_id"].iloc[1])
    who = "shopper-who-leaves"
    assert post(f"{url}/events", {"events": [{"user_id": who, "item_id": item,
                                              "event_type": "click"}]})[0] == 200  # fmt: skip
    assert set(recommend(url, [who])["reason"]) != {"popular right now"}
    said = sh([str(BIN / "recfusion"), "forget", who], dest, env)
    assert "1 event(s) removed" in said and "1 row(s) removed from 1 file(s)" in said, said
    # the next answer knows nothing of them: the popular list, as for a stranger
    assert set(recommend(url, [who])["reason"]) == {"popular right now"}
    files = (dest / "data/live/events").rglob("*.parquet")  # none left if theirs was the only
    assert who not in {u for f in files for u in pd.read_parquet(f)["user_id"]}
    listed = (dest / "data/forget/forgotten.txt").read_text()
    assert who not in listed and listed.count("user-") == 1


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the store plays no part
def test_fuzzed_requests_never_get_a_5xx(server) -> None:
    """Schemathesis from the app's OpenAPI schema, valid and invalid bodies (tests/fuzz.py; the
    benchmark sends 1,200, benchmarks/results/fuzz_http.json)."""
    url, dest, env, target = server
    result = fuzz_api(url, 40, seed=1)
    assert result["requests"] >= 160 and result["server_errors"] == 0, result
    assert result["per_operation"]["POST /events (negative)"] > 0
