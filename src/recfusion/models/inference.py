"""Traced inference for serving: one `tf.function` per model, kept while the model lives.

An eager Keras call costs more Python than the arithmetic of one served request (a query, or the
few hundred candidates of one user); a traced function with `reduce_retracing` runs the same
graph for every batch size after the second one it sees.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from recfusion.models.tf_setup import keras, tf

_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def traced(model: keras.Model, post: Callable[[Any], Any] | None = None) -> Callable:
    """`model(inputs, training=False)`, then `post` on its output, as one cached tf.function."""
    if model not in _TRACED:

        def forward(inputs: Any) -> Any:
            out = model(inputs, training=False)
            return out if post is None else post(out)

        _TRACED[model] = tf.function(forward, reduce_retracing=True)
    return _TRACED[model]
