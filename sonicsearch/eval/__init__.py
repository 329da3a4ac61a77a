"""Measuring: classification and retrieval metrics (metrics), deterministic degradations of
queries (degrade) and the MFCC baseline (baseline), and the harness the benchmark scripts
call: tracks and excerpts (tracks), systems that turn clips into window vectors (systems),
an in-memory window index searched with the product's roll-ups (window_index), and label
and near-duplicate retrieval side by side (retrieval)."""
