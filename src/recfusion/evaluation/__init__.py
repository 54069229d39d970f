"""Ranking metrics, slices, bootstrap and reports."""
