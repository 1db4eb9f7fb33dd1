"""TensorRT engines from the exported ONNX graphs (GPU hosts with TensorRT only)."""
