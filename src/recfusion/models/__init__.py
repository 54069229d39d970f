"""TensorFlow Recommenders sub-models: model inputs, towers, two-tower retrieval, ranking, user
tags, devices; each model's save and load sit beside it (`export.py` for the retrieval model).

Import TensorFlow only through `recfusion.models.tf_setup`, which selects Keras 2 first.
"""
