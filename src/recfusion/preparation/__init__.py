"""Cleaning, normalisation, vocabularies and splits (the `prepare` stage's pure core)."""
