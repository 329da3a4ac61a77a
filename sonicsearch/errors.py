"""One exception hierarchy. Library code raises these; the CLI turns them into a one-line
message on stderr and exit code 1."""

from __future__ import annotations

from pathlib import Path


class SonicsearchError(Exception):
    """Base class of every error a user can cause (bad input, bad file, bad config)."""


class ConfigError(SonicsearchError):
    """A config file or option has an unknown key or a value of the wrong kind."""


class OptionError(ConfigError):
    """One option's value is unusable; ``option`` names it (``--window``), so the CLI
    reports a usage error (exit 2) on that flag."""

    def __init__(self, option: str, message: str):
        self.option = option
        super().__init__(message)


class AudioError(SonicsearchError):
    """An audio file cannot be used: unreadable, empty, corrupt, silent or too short.

    Attributes:
        path: the file.
        reason: a short reason, used to group skipped files in batch summaries.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class DataError(SonicsearchError):
    """A dataset (folder or CSV) is malformed, or a label has too few files to split."""


class ModelError(SonicsearchError):
    """A model cannot be built or loaded: unknown arch, missing weights, bad checkpoint."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights are not in the local cache and cannot be downloaded."""


class DeviceError(ConfigError):
    """The device asked for cannot be used (``--device cuda`` on a machine without a CUDA
    GPU). A ConfigError: the setting is wrong for this machine, whichever stage reads it."""


class IndexStoreError(SonicsearchError):
    """An index is missing, damaged, or was built with another model."""


class TrainingError(SonicsearchError):
    """Training cannot go on (for example, the loss became NaN)."""


class UnknownNameError(ConfigError, KeyError):
    """A name that no registry entry has (a roll-up, backend, index type, degradation); the
    message lists the valid ones. A KeyError too, as the dict lookup it replaces raised."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
