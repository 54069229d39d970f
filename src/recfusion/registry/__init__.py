"""Model registry: the promotion gate (a pure decision), MLflow alias moves, lineage."""
