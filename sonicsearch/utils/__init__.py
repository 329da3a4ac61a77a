"""Helpers every stage uses and that belong to none: atomic files and hashes (``fileio``),
the device and torch settings (``runtime``), logging and progress bars (``progress``),
printable paths and skip summaries (``reporting``), figures (``plots``) and C libraries'
stderr caught around a call (``native_stderr``).

Import the module you need (``from sonicsearch.utils.progress import log``); this package
re-exports nothing, so importing one helper never loads another's dependencies (torch,
matplotlib).
"""
