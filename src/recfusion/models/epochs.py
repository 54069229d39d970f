"""Epoch-by-epoch training that resumes exactly: the loop the two-tower and the ranking models
share.

Each epoch is checkpointed (model, optimizer and the model-selection state, in one atomic
checkpoint), and each epoch's randomness (the data order, the dropout streams) is a function of
the run's seed and the epoch alone, so a run killed at any point and started again ends with the
same weights and metrics as one never interrupted (tests/model/test_resume.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recfusion.models.devices import multi_worker
from recfusion.models.tf_setup import keras, tf

log = logging.getLogger(__name__)


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of epoch `epoch` (0-based): a function of the run's seed and the epoch
    alone, so an epoch sees the same order whether or not the run was interrupted before it."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def gathered_batches(
    make: Callable[[np.ndarray], Any],
    n: int,
    batch_size: int,
    order_seed: int | None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """One epoch of batches of `n` examples, batch i being `make(indices)` for the examples at
    positions order[i * batch_size:(i + 1) * batch_size]: `order` is a permutation seeded by
    `order_seed`, or 0..n-1 when it is None.

    The examples stay in their NumPy arrays and each batch is gathered when the model asks for
    it (`from_generator`), so memory is the arrays (kept while the process lives: TF holds the
    generator) plus a few batches. `from_tensor_slices` would copy every array into the graph
    (which cannot pass 2 GB) and a full-length `shuffle` would hold every example again, one
    small tensor each: most of a training stage's memory at a large shop's millions of examples.

    Args:
        make: example positions -> the batch's nested structure of arrays (first dimension the
            batch); called on an empty selection once to learn the structure.
        drop_remainder: leave out a last batch smaller than `batch_size` (not when that is the
            only batch).
    """
    stop = n - n % batch_size if drop_remainder and n >= batch_size else n

    def batches() -> Any:
        # drawn here, not held by the closure: TF 2.21 never frees a from_generator dataset's
        # generator (tensorflow#57690), so a per-epoch array kept by it would pile up
        order = (
            np.arange(n) if order_seed is None else np.random.default_rng(order_seed).permutation(n)
        )
        for start in range(0, stop, batch_size):
            yield make(order[start : start + batch_size])

    signature = tf.nest.map_structure(
        lambda a: tf.TensorSpec((None, *np.shape(a)[1:]), tf.as_dtype(np.asarray(a).dtype)),
        make(np.arange(0)),
    )
    return tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(2)


@dataclass
class Selection:
    """Model selection over the epochs so far: the best epoch by a validation score, and how
    many epochs have passed without beating it (early stopping)."""

    monitor: str  # the key of the epoch entries that scores an epoch
    higher_is_better: bool
    history: list[dict] = field(default_factory=list)  # per epoch: {"epoch": n, logs, metrics}
    best_score: float | None = None
    best_epoch: int = 0  # 1-based; 0 = none yet
    wait: int = 0  # epochs since the best one

    def record(self, entry: dict[str, float]) -> bool:
        """Appends an epoch's entry; returns whether its score is the best so far."""
        self.history.append({"epoch": len(self.history) + 1, **entry})
        score = entry[self.monitor]
        better = self.best_score is None or (
            score > self.best_score if self.higher_is_better else score < self.best_score
        )
        if better:
            self.best_score, self.best_epoch, self.wait = score, len(self.history), 0
        else:
            self.wait += 1
        return better


class EpochCheckpoints:
    """What an interrupted run resumes from, in `folder`.

    latest/: the model, its optimizer and the `Selection` after the last finished epoch, as one
    checkpoint: the CheckpointManager makes it current with an atomic rename, so a run killed at
    any moment leaves a consistent epoch behind. best/: the weights of the best epoch. They are
    written before that epoch's latest/ checkpoint; a run killed between the two redoes the epoch,
    identically (`train_epochs`), and writes them again.
    """

    def __init__(self, model: keras.Model, folder: Path, scratch: Path | None = None) -> None:
        """`scratch`: where a worker other than the chief of a multi-worker run writes (every
        worker saves, only the chief's are kept); it reads the chief's `folder`."""
        # outside any strategy scope: a plain variable, saved and restored with the weights
        self.selection = tf.Variable("", dtype=tf.string, trainable=False)
        latest = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, selection=self.selection
        )
        self.folder, writes = folder, scratch or folder
        self.manager = tf.train.CheckpointManager(latest, str(writes / "latest"), max_to_keep=1)
        self.best = tf.train.Checkpoint(model=model)
        self.best_path = str(writes / "best" / "weights")
        self.wrote_best = False

    def restore(self) -> Selection | None:
        """Restores the model and optimizer to the last finished epoch and returns the selection
        state then; None when no epoch has finished."""
        path = tf.train.latest_checkpoint(str(self.folder / "latest"))
        if path is None:
            return None
        self.manager.checkpoint.restore(path).assert_existing_objects_matched()
        return Selection(**json.loads(self.selection.numpy().decode()))

    def save(self, selection: Selection, improved: bool) -> None:
        if improved:
            self.best.write(self.best_path)
            self.wrote_best = True
        self.selection.assign(json.dumps(dataclasses.asdict(selection)))
        self.manager.save()

    def restore_best(self, selection: Selection) -> None:
        """The best epoch's weights: this run's, else (its best epoch came before a resume)
        the chief folder's, which nothing writes now, as no worker found a better epoch."""
        if selection.best_epoch > 0:
            path = self.best_path if self.wrote_best else str(self.folder / "best" / "weights")
            self.best.read(path).expect_partial()


def train_epochs(
    model: keras.Model,
    selection: Selection,
    folder: Path,
    epoch_batches: Callable[[int], tf.data.Dataset],
    measure: Callable[[dict[str, float]], dict[str, float]],
    epochs: int,
    patience: int,
    seed: int,
    name: str,
    random_step: bool,
    validation_data: tf.data.Dataset | None = None,
) -> Selection:
    """Fits `model` one epoch at a time, each epoch checkpointed, resuming from `folder` when an
    earlier run left a checkpoint there; stops after `epochs`, or `patience` epochs without a
    better `selection.monitor`; ends with the best epoch's weights.

    A resumed run retraces the uninterrupted one exactly, because each epoch's randomness
    depends on `seed` and the epoch alone: `epoch_batches(epoch)` orders the examples by
    `epoch_seed(seed, epoch)`, and with `random_step` `keras.utils.set_random_seed(seed)`
    before every epoch restarts the dropout streams (it resets the counters of TF's seeded
    stateful random ops, see the tf.random.set_seed docs; the streams are not variables a
    checkpoint could hold). The seeds those ops got when the training step was traced are the
    same too: every process traces it once, in its first epoch, right after setting that seed.
    The masks repeat by step from one epoch to the next, but the examples they meet do not.
    The restart costs about 0.5 s an epoch on the default data (TF instantiates the step's
    kernels again), so a model whose step draws no random numbers skips it.

    Args:
        model: a compiled model, its variables built (so a checkpoint restores into them).
        selection: the state to start from when `folder` holds no checkpoint.
        folder: the resume state (`EpochCheckpoints`).
        epoch_batches: epoch (0-based) -> that epoch's training batches.
        measure: the epoch's Keras logs -> the entry to record, with `selection.monitor`.
        epochs, patience: the most epochs; epochs without gain before stopping.
        seed: the run's seed.
        name: the model's name in log lines.
        random_step: whether the training step draws random numbers (dropout).
        validation_data: batches Keras evaluates after each epoch (`val_` logs).

    Returns:
        The selection state after the last epoch.
    """
    with tempfile.TemporaryDirectory(prefix="recfusion-worker-ckpt-") as scratch:
        kept = model.distribute_strategy.extended.should_checkpoint
        checkpoints = EpochCheckpoints(model, folder, None if kept else Path(scratch))
        selection = resumed(checkpoints, selection, model, name)
        while len(selection.history) < epochs and selection.wait < patience:
            epoch = len(selection.history)
            t = time.perf_counter()
            if random_step:
                keras.utils.set_random_seed(seed)
            fit = model.fit(
                epoch_batches(epoch),
                validation_data=validation_data,
                initial_epoch=epoch,
                epochs=epoch + 1,
                verbose=0,
            )
            entry = agreed(measure({k: float(v[-1]) for k, v in fit.history.items()}),
                           model.distribute_strategy)  # fmt: skip
            improved = selection.record(entry)
            checkpoints.save(selection, improved)
            # logged once the epoch's checkpoint is written (tests/model/test_resume.py waits for it)
            log.info(
                "%s epoch %d: loss %.4g, %s %.4f (best %.4f at epoch %d), %.1fs",
                name,
                epoch + 1,
                entry["loss"],
                selection.monitor,
                entry[selection.monitor],
                selection.best_score,
                selection.best_epoch,
                time.perf_counter() - t,
            )
        checkpoints.restore_best(selection)
        return selection


def agreed(entry: dict[str, float], strategy: tf.distribute.Strategy) -> dict[str, float]:
    """`entry` averaged over the workers of a multi-worker run, so every worker makes the same
    selection and stopping decisions whatever rounding its own evaluation met (one that stopped
    alone would leave the others waiting); unchanged in a single process."""
    if not multi_worker(strategy):
        return entry
    keys = sorted(entry)
    values = tf.constant([entry[k] for k in keys], dtype=tf.float64)
    local = strategy.experimental_distribute_values_from_function(lambda _: values)
    mean = strategy.reduce(tf.distribute.ReduceOp.MEAN, local, axis=None).numpy()
    return {k: float(v) for k, v in zip(keys, mean, strict=True)}


def resumed(checkpoints: EpochCheckpoints, selection: Selection, model: keras.Model,
            name: str) -> Selection:  # fmt: skip
    """The selection state to go on from: the last finished epoch's when `checkpoints` hold one
    (the model and optimizer restored to it), else `selection`. In a multi-worker run every
    worker must resume from the same epoch.

    Raises:
        ValueError: the workers resumed from different epochs.
    """
    restored = checkpoints.restore()
    if restored is not None:
        selection = restored
        log.info("%s: resuming after epoch %d from %s", name, len(selection.history),
                 checkpoints.folder / "latest")  # fmt: skip
    done = float(len(selection.history))
    seen = agreed({"epochs": done, "squared": done * done}, model.distribute_strategy)
    if seen["squared"] - seen["epochs"] ** 2 > 1e-6:  # the workers' epoch counts differ
        raise ValueError(f"{name}: the workers resumed from different epochs (this one from "
                         f"{int(done)}); the non-chief workers read the chief's checkpoint "
                         f"folder {checkpoints.folder}: put it on a filesystem every worker "
                         "shares, or delete it to start again")  # fmt: skip
    return selection
