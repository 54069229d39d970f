"""Locust user for benchmarks/serving.py: single-user top-10 recommendation and search requests
against `mlflow models serve`. The request pool (users and queries) comes from the JSON file
named by RECFUSION_BENCH_POOL."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import HttpUser, constant, task

POOL = json.loads(Path(os.environ["RECFUSION_BENCH_POOL"]).read_text(encoding="utf-8"))


class Shopper(HttpUser):
    wait_time = constant(0)  # closed loop: the next request as soon as the answer arrives

    @task
    def recommend(self) -> None:
        user = random.choice(POOL["users"])
        body = {"dataframe_records": [{"user_id": user, "k": 10, "query": "", "exclude": []}]}
        self._post(body, "recommend")

    @task
    def search(self) -> None:
        user, query = random.choice(POOL["searches"])
        body = {"dataframe_records": [{"user_id": user, "k": 10, "query": query, "exclude": []}]}
        self._post(body, "search")

    def _post(self, body: dict, name: str) -> None:
        with self.client.post("/invocations", json=body, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
            elif len(r.json().get("predictions", [])) == 0:
                r.failure("empty answer")
