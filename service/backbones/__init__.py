"""Backbones: cards, preprocessing, runtimes, batching, and export to ONNX."""
