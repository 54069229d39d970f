"""Prefect flows: wiring only; the work is in recfusion.orchestration and the stages."""
