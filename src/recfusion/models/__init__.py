"""TensorFlow Recommenders sub-models: towers, two-tower retrieval, ranking, user tags, devices.

Import TensorFlow only through `recfusion.models.tf_setup`, which selects Keras 2 first.
"""
