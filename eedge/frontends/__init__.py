"""Frontends: read a model (ONNX file, torch module) into the graph IR."""
