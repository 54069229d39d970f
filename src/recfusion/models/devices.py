"""Which devices train: `train.device: auto | cpu | gpu`.

With more than one device of the chosen kind (several GPUs, or several logical CPUs as the tests
configure them) training runs under a MirroredStrategy over them; on GPUs also with mixed
precision. With one device it runs under the default strategy.
"""

from __future__ import annotations

import logging
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
        return {
            "kind": self.kind,
            "devices": self.devices,
            "strategy": type(self.strategy).__name__,
            "mixed_precision": self.mixed_precision,
        }


def split_cpu(n: int) -> None:
    """Splits the physical CPU into `n` logical devices (must run before TensorFlow starts
    executing). Used by tests to exercise the multi-device path without GPUs."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
    )


def plan_devices(device: str) -> DevicePlan:
    """The strategy for `device` ("auto", "cpu" or "gpu").

    Raises:
        ValueError: `device` is "gpu" but TensorFlow sees no GPU, or the value is unknown.
    """
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"train.device must be auto, cpu or gpu, got {device!r}")
    gpus = tf.config.list_logical_devices("GPU")
    if device == "gpu" and not gpus:
        raise ValueError("train.device is 'gpu' but TensorFlow sees no GPU; use auto or cpu")
    use_gpu = device in ("auto", "gpu") and bool(gpus)
    devices = gpus if use_gpu else tf.config.list_logical_devices("CPU")
    names = [d.name for d in devices]
    if len(names) > 1:
        strategy: tf.distribute.Strategy = tf.distribute.MirroredStrategy(names)
    else:
        strategy = tf.distribute.get_strategy()
    keras.mixed_precision.set_global_policy("mixed_float16" if use_gpu else "float32")
    plan = DevicePlan(strategy, "GPU" if use_gpu else "CPU", names, use_gpu)
    log.info("training devices: %s", plan.describe())
    return plan
