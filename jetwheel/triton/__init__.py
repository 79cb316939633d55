"""Triton Inference Server's build.py pointed at the index, and the smoke test in its image."""
