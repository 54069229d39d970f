"""The one place TensorFlow is imported: TFRS needs Keras 2 (tf-keras), which TensorFlow uses
only when TF_USE_LEGACY_KERAS=1 is set before its first import.

Every module that needs TensorFlow does `from recfusion.models.tf_setup import tf, tfrs`.
"""

from __future__ import annotations

import os

# Must precede the first `import tensorflow` anywhere in the process (TFRS is Keras-2 only):
# https://github.com/tensorflow/recommenders/issues/712
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402
import tf_keras as keras  # noqa: E402

if not tf.keras.__name__.startswith("tf_keras"):  # pragma: no cover - a broken install
    raise ImportError(
        "TensorFlow was imported before recfusion.models.tf_setup, so it uses Keras 3 and TFRS "
        "will not work; import recfusion.models.tf_setup first or set TF_USE_LEGACY_KERAS=1"
    )

__all__ = ["keras", "tf", "tfrs"]
