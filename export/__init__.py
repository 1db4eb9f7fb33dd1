"""Offline side of phoenix-triton: PyTorch model definitions, training and evaluation, and (later)
ONNX/TensorRT export into a Triton model repository. Everything here may import torch."""
