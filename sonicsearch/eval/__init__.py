"""Measuring: classification and retrieval metrics (metrics), deterministic degradations of
queries (degrade) and the MFCC baseline (baseline)."""
