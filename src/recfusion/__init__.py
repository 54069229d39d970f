"""recfusion: an MLOps system for e-commerce search and recommendation."""

__version__ = "0.1.0"
