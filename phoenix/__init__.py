"""Shared core of phoenix-triton: configs, the action taxonomy and ranking weights, id hashing,
snowflake ids and the synthetic world. Imported by both `export` (PyTorch) and `orchestrator`
(no PyTorch), so nothing in this package may import torch."""

__version__ = "0.1.0"
