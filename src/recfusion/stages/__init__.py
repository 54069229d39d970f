"""One module per DVC stage, each in the same shape: `read_inputs(...)` does every read (files,
registry), a pure `run(cfg, inputs) -> outputs` does the work, `write_outputs(outputs, ...)`
does every write, and a thin `main()` chains them. `entry.py` holds what the `main()`s share."""
