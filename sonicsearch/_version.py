"""The package version, in a module of its own so that nothing needs the package root."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sonicsearch")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"
