"""One module per DVC stage: a pure `run(cfg, ...)` and a thin `main()` that does the I/O."""
