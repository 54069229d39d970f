"""The one place TensorFlow is imported: TFRS needs Keras 2 (tf-keras), which TensorFlow uses
only when TF_USE_LEGACY_KERAS=1 is set before its first import.

Every module that needs TensorFlow does `from recfusion.models.tf_setup import tf, tfrs`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
import threading

# Must precede the first `import tensorflow` anywhere in the process (TFRS is Keras-2 only):
# https://github.com/tensorflow/recommenders/issues/712
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# What TensorFlow's native runtime writes to stderr on a machine without a GPU or AVX-512: at
# load, before absl's logging is initialised (so TF_CPP_MIN_LOG_LEVEL does not reach it), and
# once per process when an int32 op falls back from oneDNN to Eigen (an "E" line that is not an
# error). These lines, and only these, are dropped. RECFUSION_DEBUG=1 shows everything.
NATIVE_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc.*cuInit"
    r"|cuda_executor\.cc|oneDNN custom operations are on|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered|TF-TRT Warning"
    r"|oneDNN supports DT_INT32 only on platforms with AVX-512"
)
# the start of a native log line (severity letter, then digits): held until the line is whole
NATIVE_PREFIX = re.compile(rb"^[IWEF]\d*$|^[IWEF]\d{4}")


def forward_filtered(source: int, target: int) -> None:
    """Copies what arrives on fd `source` to fd `target` until end of file, leaving out every
    whole line matching NATIVE_NOTICES. Text without a line end (a progress bar's update) is
    passed on at once, unless it may be the start of a native log line."""
    pending = b""
    while chunk := os.read(source, 65536):
        pending += chunk
        *lines, pending = re.split(rb"(?<=\n)", pending)
        out = b"".join(
            ln for ln in lines if not NATIVE_NOTICES.search(ln.decode("utf-8", "replace"))
        )
        if pending and not NATIVE_PREFIX.match(pending):
            out, pending = out + pending, b""
        if out:
            os.write(target, out)
    if pending and not NATIVE_NOTICES.search(pending.decode("utf-8", "replace")):
        os.write(target, pending)


def filter_native_notices() -> None:
    """For the rest of the process, sends file descriptor 2 (native code's stderr, and Python's)
    through a thread that drops NATIVE_NOTICES lines; at exit fd 2 is put back and what is left
    is written out, so a traceback printed on the way out is not lost."""
    if os.environ.get("RECFUSION_DEBUG"):
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    thread = threading.Thread(target=forward_filtered, args=(read_end, original), daemon=True,
                              name="native-stderr-filter")  # fmt: skip
    thread.start()

    def restore() -> None:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the thread reads to the end
        thread.join(timeout=5)

    atexit.register(restore)


filter_native_notices()
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402
import tf_keras as keras  # noqa: E402

tf.config.list_physical_devices("GPU")  # where a machine without CUDA says so, once

if not tf.keras.__name__.startswith("tf_keras"):  # pragma: no cover - a broken install
    raise ImportError(
        "TensorFlow was imported before recfusion.models.tf_setup, so it uses Keras 3 and TFRS "
        "will not work; import recfusion.models.tf_setup first or set TF_USE_LEGACY_KERAS=1"
    )

__all__ = ["keras", "tf", "tfrs"]
