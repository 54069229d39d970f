"""The one place TensorFlow is imported: TFRS needs Keras 2 (tf-keras), which TensorFlow uses
only when TF_USE_LEGACY_KERAS=1 is set before its first import.

Every module that needs TensorFlow does `from recfusion.models.tf_setup import tf, tfrs`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# Must precede the first `import tensorflow` anywhere in the process (TFRS is Keras-2 only):
# https://github.com/tensorflow/recommenders/issues/712
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# What TensorFlow's native runtime writes to stderr as it loads on a machine without a GPU. absl
# prints it before its logging is initialised, so TF_CPP_MIN_LOG_LEVEL does not reach it; these
# lines (and only these) are held back. RECFUSION_DEBUG=1 shows everything.
START_UP_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc.*cuInit"
    r"|cuda_executor\.cc|oneDNN custom operations are on|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered|TF-TRT Warning"
)


@contextlib.contextmanager
def held_native_notices() -> Iterator[None]:
    """Redirects file descriptor 2 to a temporary file while TensorFlow loads, then writes back
    every line of it except the known start-up notices."""
    if os.environ.get("RECFUSION_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(ln for ln in lines if not START_UP_NOTICES.search(ln))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


with held_native_notices():
    import tensorflow as tf
    import tensorflow_recommenders as tfrs
    import tf_keras as keras

    tf.config.list_physical_devices("GPU")  # where a machine without CUDA says so, once

if not tf.keras.__name__.startswith("tf_keras"):  # pragma: no cover - a broken install
    raise ImportError(
        "TensorFlow was imported before recfusion.models.tf_setup, so it uses Keras 3 and TFRS "
        "will not work; import recfusion.models.tf_setup first or set TF_USE_LEGACY_KERAS=1"
    )

__all__ = ["keras", "tf", "tfrs"]
