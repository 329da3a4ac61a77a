"""`sonicsearch build-index`, `query`, `info` (filled in by the search issue)."""
