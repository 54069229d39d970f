"""What the Prefect flows (flows/) use: run overrides, running DVC stages, report tables."""
