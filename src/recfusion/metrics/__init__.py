"""Leaf metrics in pure NumPy: top-k selection and ranking metrics (`ranking`), binary and
multi-label classification metrics (`classification`). They import nothing else of recfusion,
so models, fusion, search and evaluation all use them."""
