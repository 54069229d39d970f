"""Which devices train: `train.device: auto | cpu | gpu`, and how: `train.distribute`.

- mirrored: with more than one device of the chosen kind (several GPUs, or several logical CPUs
  as the tests configure them) training runs under a MirroredStrategy over them; with one device
  under the default strategy;
- none: the default strategy, on the first device of the kind;
- multi_worker: a MultiWorkerMirroredStrategy over the processes TF_CONFIG names, each with its
  local devices (`recfusion.models.workers` starts them).
On GPUs training also uses mixed precision.

A process has one plan: the first call makes it and later calls return it, because a
MultiWorkerMirroredStrategy can only be made before TensorFlow's runtime starts (a stage makes
its plan before it reads a model).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from recfusion.models.tf_setup import keras, tf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevicePlan:
    strategy: tf.distribute.Strategy
    kind: str  # "GPU" | "CPU"
    devices: list[str]  # logical device names
    mixed_precision: bool

    def describe(self) -> dict:
        out = {
            "kind": self.kind,
            "devices": self.devices,
            "strategy": (
                "MultiWorkerMirroredStrategy"
                if multi_worker(self.strategy)
                else type(self.strategy).__name__
            ),
            "mixed_precision": self.mixed_precision,
        }
        if multi_worker(self.strategy):
            spec = self.strategy.cluster_resolver.cluster_spec()
            out["workers"] = sum(spec.num_tasks(job) for job in spec.jobs)
        return out


def multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def one_process(distribute: str) -> str:
    """The `distribute` of a stage that trains in one process (all but train_retrieval and
    train_ranking): multi_worker becomes mirrored over the local devices."""
    return "mirrored" if distribute == "multi_worker" else distribute


_PLAN: dict[tuple[str, str], DevicePlan] = {}


def split_cpu(n: int) -> None:
    """Splits the physical CPU into `n` logical devices (must run before TensorFlow starts
    executing). Used by tests to exercise the multi-device path without GPUs."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
    )


def plan_devices(device: str, distribute: str = "mirrored") -> DevicePlan:
    """The strategy for `device` ("auto", "cpu" or "gpu") and `distribute` ("none", "mirrored"
    or "multi_worker"); this process's plan once made.

    Raises:
        ValueError: `device` is "gpu" but TensorFlow sees no GPU; multi_worker without
            TF_CONFIG; an unknown value; a second call asking for another plan.
    """
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"train.device must be auto, cpu or gpu, got {device!r}")
    if distribute not in ("none", "mirrored", "multi_worker"):
        raise ValueError(f"train.distribute must be none, mirrored or multi_worker, got "
                         f"{distribute!r}")  # fmt: skip
    if _PLAN:
        ((made, plan),) = _PLAN.items()
        if made != (device, distribute) and "multi_worker" in (distribute, made[1]):
            raise ValueError(f"this process already trains with {made}, not {(device, distribute)}")
        if made == (device, distribute):
            return plan
    if device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise ValueError("train.device is 'gpu' but TensorFlow sees no GPU; use auto or cpu")
    strategy: tf.distribute.Strategy | None = None
    if distribute == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("train.distribute is multi_worker but TF_CONFIG is not set: run the "
                             "stage's main (it starts local workers) or set TF_CONFIG")  # fmt: skip
        if device == "cpu":
            tf.config.set_visible_devices([], "GPU")  # before the runtime starts
        # made before anything starts TensorFlow's runtime; RING all-reduce works on CPU and GPU
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_logical_devices("GPU")
    use_gpu = device in ("auto", "gpu") and bool(gpus)
    devices = gpus if use_gpu else tf.config.list_logical_devices("CPU")
    names = [d.name for d in devices]
    if strategy is not None:
        names = list(strategy.extended.worker_devices)
    elif distribute == "mirrored" and len(names) > 1:
        strategy = tf.distribute.MirroredStrategy(names)
    else:
        strategy, names = tf.distribute.get_strategy(), names[:1]
    keras.mixed_precision.set_global_policy("mixed_float16" if use_gpu else "float32")
    plan = DevicePlan(strategy, "GPU" if use_gpu else "CPU", names, use_gpu)
    _PLAN.clear()
    _PLAN[(device, distribute)] = plan
    log.info("training devices: %s", plan.describe())
    return plan
