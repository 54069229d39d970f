"""Serving: the packaged recommender, its MLflow pyfunc wrapper, and scoring it through its
request interface on a test split (what the gate compares)."""
