"""CUDA C sources of rawgan's kernels, shipped as package data (``rawgan.kernels``)."""
