"""Serving: the packaged recommender and its MLflow pyfunc wrapper."""
