"""Hybrid product search: BM25 over the catalogue's words, a TFRS query tower aligned with the
retrieval model's item embeddings, reciprocal rank fusion, and personalisation by the ranking
model."""
