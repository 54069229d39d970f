"""One optimizer step on an embedding table, tf_keras' Adam against recfusion's LazyAdam: the
time a training step spends updating a table whose batch touched 1,024 rows, at the table sizes
of the synthetic shops (users and items of `small` to `xl`, the two-tower's 128 dimensions).

    python benchmarks/optimizer_step.py [--rows 4000 50000 500000 2000000] [--steps 20]

Results: benchmarks/results/optimizer_step.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402
from recfusion.models.optimizers import LazyAdam  # noqa: E402
from recfusion.models.tf_setup import keras, tf  # noqa: E402

DIM, BATCH = 128, 1024


def step_ms(optimizer: keras.optimizers.Optimizer, rows: int, steps: int) -> float:
    table = tf.Variable(tf.random.normal([rows, DIM], seed=1))
    rng = np.random.default_rng(0)

    @tf.function
    def step(indices: tf.Tensor) -> tf.Tensor:
        values = tf.ones([BATCH, DIM])
        return optimizer.apply_gradients([(tf.IndexedSlices(values, indices, tf.shape(table)),
                                           table)])  # fmt: skip

    batches = [tf.constant(rng.integers(0, rows, BATCH)) for _ in range(steps + 2)]
    step(batches[0])  # trace and build the slots
    step(batches[1])
    times = []
    for b in batches[2:]:
        t = time.perf_counter()
        step(b).numpy()  # the step count, once the update is done (not a read of the table)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[4000, 50000, 500000, 2000000])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    results = []
    for rows in args.rows:
        dense = step_ms(keras.optimizers.Adam(0.001), rows, args.steps)
        lazy = step_ms(LazyAdam(0.001), rows, args.steps)
        results.append({"rows": rows, "dim": DIM, "batch_rows": BATCH,
                        "adam_ms": round(dense, 2), "lazy_adam_ms": round(lazy, 2)})  # fmt: skip
        print(results[-1], flush=True)
    path = write_result("optimizer_step", {"median_step_ms": results, "steps": args.steps})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
