"""LazyAdam: Adam's update for the rows a sparse gradient touches, nothing for the others."""

from __future__ import annotations

import numpy as np
import pytest

from recfusion.models.optimizers import LazyAdam
from recfusion.models.tf_setup import keras, tf


def trained_table(optimizer, steps) -> np.ndarray:
    """A [6, 2] table (rows 0..5 hold 2r, 2r+1) after one sparse gradient per step."""
    table = tf.Variable(np.arange(12, dtype=np.float32).reshape(6, 2))
    for rows, values in steps:
        gradient = tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(rows),
                                    tf.constant([6, 2]))  # fmt: skip
        optimizer.apply_gradients([(gradient, table)])
    return table.numpy()


def test_the_first_step_is_adams_and_repeated_rows_add_up() -> None:
    step = [([1, 3, 1], [[1.0, 2.0], [3.0, 4.0], [0.5, 0.5]])]  # row 1 twice: gradient 1.5, 2.5
    lazy = trained_table(LazyAdam(0.1), step)
    np.testing.assert_allclose(lazy, trained_table(keras.optimizers.Adam(0.1), step), rtol=1e-6)
    # Adam's first step moves each touched weight by the learning rate against its gradient
    np.testing.assert_allclose(lazy[[1, 3]], [[1.9, 2.9], [5.9, 6.9]], rtol=1e-6)


def test_rows_outside_the_batch_keep_their_weights_and_moments() -> None:
    steps = [([1, 3], [[1.0, 2.0], [3.0, 4.0]]), ([2], [[1.0, 1.0]])]
    lazy = trained_table(LazyAdam(0.1), steps)
    dense = trained_table(keras.optimizers.Adam(0.1), steps)
    # step 2 touches row 2 only: rows 1 and 3 stay where step 1 left them (Adam's momentum
    # moves them on), rows 0, 4, 5 never move
    np.testing.assert_allclose(lazy[[1, 3]], [[1.9, 2.9], [5.9, 6.9]], rtol=1e-6)
    assert not np.allclose(dense[[1, 3]], lazy[[1, 3]])
    np.testing.assert_array_equal(lazy[[0, 4, 5]], [[0, 1], [8, 9], [10, 11]])
    # row 2 at global step 2 with fresh moments: m = 0.1 g, v = 0.001 g^2, bias-corrected
    # step 0.1 * sqrt(1 - 0.999^2) / (1 - 0.9^2) * 0.1 / sqrt(0.001) = 0.07441
    np.testing.assert_allclose(lazy[2], [4 - 0.07441, 5 - 0.07441], rtol=1e-4)


def test_dense_gradients_are_adams() -> None:
    def dense_steps(optimizer) -> np.ndarray:
        w = tf.Variable([1.0, -2.0])
        for g in ([0.5, 1.0], [-1.0, 0.25]):
            optimizer.apply_gradients([(tf.constant(g), w)])
        return w.numpy()

    np.testing.assert_array_equal(dense_steps(LazyAdam(0.01)),
                                  dense_steps(keras.optimizers.Adam(0.01)))  # fmt: skip


def test_amsgrad_is_refused() -> None:
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(0.01, amsgrad=True)
