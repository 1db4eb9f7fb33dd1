"""Importing checkpoints written by X's own trainer (xai-org/x-algorithm, `phoenix/xrex`)."""

from export.importer.x_checkpoint import XCheckpoint, read_x_checkpoint

__all__ = ["XCheckpoint", "read_x_checkpoint"]
