"""The project's error hierarchy. Every entry point raises one of these with a message that names
the offending field, so callers can map them to CLI messages or HTTP statuses in one place.

    PhoenixError
    ├── ConfigError       a configuration value is missing, malformed or inconsistent
    ├── InputError        a tensor or request does not match what the model expects
    ├── CheckpointError   a checkpoint directory is missing, malformed or does not fit its config
    │   └── CheckpointImportError   a checkpoint written by X's trainer cannot be read or verified
    ├── WorldError        a synthetic-world directory is missing or malformed
    ├── ExportError       a model cannot be exported, or its exported graph disagrees with PyTorch
    └── ServingError      the Triton server or a served model cannot start or answer
"""

from __future__ import annotations


class PhoenixError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(PhoenixError, ValueError):
    """A configuration value is missing, malformed or inconsistent."""


class InputError(PhoenixError, ValueError):
    """A model input has the wrong shape, dtype or value range."""


class CheckpointError(PhoenixError):
    """A checkpoint cannot be read or does not match its configuration."""


class CheckpointImportError(CheckpointError):
    """A checkpoint written by X's own trainer is missing, unreadable or fails its checksums."""


class WorldError(PhoenixError):
    """A synthetic-world directory cannot be read or written."""


class ExportError(PhoenixError):
    """A model cannot be exported, or the exported graph does not match PyTorch or its contract."""


class ServingError(PhoenixError):
    """The Triton server or a served model cannot start or answer."""
