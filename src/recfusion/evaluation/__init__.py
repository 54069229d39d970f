"""Evaluation reports: slices, beyond-accuracy metrics, search quality on held-out queries and
the HTML report (the leaf ranking metrics and the bootstrap live in `recfusion.metrics`)."""
