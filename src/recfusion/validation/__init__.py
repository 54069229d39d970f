"""Data validation with Great Expectations: suites, checkpoints, Data Docs, quarantine."""
