"""Nearest-neighbour search at catalogue scale: exact scan vs the faiss HNSW index recfusion
exports (`recfusion.models.export.build_faiss`), at 100K and 1M items x 64 dimensions.

Embeddings are synthetic but clustered like trained ones (unit vectors around 1,000 centres;
uniformly random vectors would make any graph index look worse than it is on real data). For each
size: exact top-10 by a full float32 scan (one query at a time, and a batch of 256), the HNSW
index's build time, recall@10 against the exact answer and single-query latency at several
efSearch values, and the memory bandwidth the exact scan reaches next to the machine's own
(a matrix-vector product over 1 GiB, far larger than the caches). At 100K items the embeddings
(25.6 MB) largely fit in cache, so the scan can read faster than memory. Results: benchmarks/results/index_scale.json.

    python benchmarks/index_scale.py [--sizes 100000 1000000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402
from recfusion.models.export import build_faiss  # noqa: E402

DIM = 64
K = 10
EF_SEARCH = (32, 64, 128, 256)


def clustered(n: int, rng: np.random.Generator, centres: np.ndarray, spread: float = 0.6
              ) -> np.ndarray:  # fmt: skip
    """[n, DIM] unit vectors scattered around random `centres`."""
    x = centres[rng.integers(0, len(centres), n)] + spread * rng.standard_normal(
        (n, DIM)
    ) / np.sqrt(DIM)
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(items: np.ndarray, queries: np.ndarray, batch: int = 256) -> np.ndarray:
    out = np.empty((len(queries), K), dtype=np.int64)
    for s in range(0, len(queries), batch):
        scores = queries[s : s + batch] @ items.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[s : s + batch] = np.take_along_axis(top, order, axis=1)
    return out


def memory_bandwidth_gbs(gib: float = 1.0, repeats: int = 5) -> dict[str, float]:
    """Read bandwidth in GB/s: the best of `repeats` full reads of a `gib` GiB float32 array by a
    matrix-vector product (what the exact scan does), on one thread and on every core."""
    from threadpoolctl import threadpool_limits

    a = np.ones((int(gib * 2**30 / 4 / 1024), 1024), dtype=np.float32)
    v = np.ones(1024, dtype=np.float32)
    out = {}
    for name, threads in (("one_thread", 1), ("all_cores", os.cpu_count() or 1)):
        with threadpool_limits(threads):
            best = min(_timed(lambda: a @ v) for _ in range(repeats))
        out[name] = round(a.nbytes / best / 1e9, 2)
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def percentiles(ms: list[float]) -> dict[str, float]:
    return {f"p{p}": round(float(np.percentile(ms, p)), 3) for p in (50, 95, 99)}


def run_size(n: int, n_queries: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, DIM)).astype(np.float32)
    items = clustered(n, rng, centres)
    queries = clustered(n_queries, rng, centres)
    truth = exact_top(items, queries)
    one = [1000 * _timed(lambda q=q: exact_top(items, q[None, :])) for q in queries[:200]]
    batch_s = _timed(lambda: exact_top(items, queries[:256]))
    scan_gbs = items.nbytes / (np.median(one) / 1000) / 1e9
    t = time.perf_counter()
    index = build_faiss(items)
    build_s = time.perf_counter() - t
    hnsw = {}
    for ef in EF_SEARCH:
        index.hnsw.efSearch = ef
        _, found = index.search(queries, K)
        recall = float(
            np.mean([len(set(f) & set(e)) / K for f, e in zip(found, truth, strict=True)])
        )
        lat = [1000 * _timed(lambda q=q: index.search(q[None, :], K)) for q in queries[:300]]
        hnsw[f"ef_search_{ef}"] = {"recall_at_10": round(recall, 4), "latency_ms": percentiles(lat)}
        print(f"n={n} ef={ef}: recall@10 {recall:.4f}, p50 {np.median(lat):.3f} ms", flush=True)
    return {
        "items": n,
        "embedding_bytes": int(items.nbytes),
        "exact": {"latency_ms_one_query": percentiles(one),
                  "batch_256_ms_per_query": round(1000 * batch_s / 256, 3),
                  "scan_gb_per_s": round(scan_gbs, 2)},
        "hnsw": {"m": 32, "ef_construction": 64, "build_s": round(build_s, 1), **hnsw},
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    bandwidth = memory_bandwidth_gbs()
    print(f"memory read bandwidth (1 GiB matrix-vector product): {bandwidth} GB/s", flush=True)
    sizes = [run_size(n, args.queries, args.seed) for n in args.sizes]
    for s in sizes:
        s["exact"]["share_of_memory_bandwidth"] = round(
            s["exact"]["scan_gb_per_s"] / bandwidth["all_cores"], 3)  # fmt: skip
    path = write_result("index_scale", {"dim": DIM, "k": K, "queries": args.queries,
                                        "memory_bandwidth_gb_per_s": bandwidth,
                                        "sizes": sizes})  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
