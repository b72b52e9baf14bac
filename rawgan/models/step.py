"""One DCGAN training iteration with its whole state on the device — and, on the CUDA backends,
from static memory and as one CUDA graph.

    step = TrainStep(model, batch_size=64, z_gen=PhiloxState(seed), g_steps=2)   # graph=True
    for images in loader:                 # uint8 (N, H, W, C) host batches
        metrics = step(images)            # 0-d device arrays (the same buffers every step)
        if log_step:
            host = step.read_metrics()    # {name: float}: the one host synchronisation

What one call does: upload the uint8 batch into a fixed device buffer (outside the graph), then
the *step body* — convert it to float NCHW in [−1, 1] on the device (``ops.images_to_float``),
draw z from the Philox stream whose offset lives on the device (``PhiloxState.bind``), and
``DCGAN.train_step`` (one D update, ``g_steps`` G updates; Adam's step count also on the
device). No host value changes from step to step, so the body can be frozen into a graph.

On the CUDA backends (``cupy``, ``emulated``) the body runs inside the step's
:class:`~rawgan.runtime.StaticMemory`: the first step allocates every activation, gradient,
workspace and metric buffer, later steps reuse them and allocate nothing. With ``graph=True``
the first call runs eagerly (warm-up: allocations, kernel compilation), the second captures the
body (``rt.capture``: on CuPy a stream capture on the runtime's non-blocking stream; on the
emulator a recording) and every call from then on is one ``graph.launch()``. ``graph=False``
(train's ``--no-graph``) runs the same body eagerly every step. Both orders of work are
identical, so eager and graph steps give bit-identical results (tests/test_step.py).

On the NumPy backend there is no runtime: the body runs eagerly on NumPy arrays.
"""
from __future__ import annotations

import numpy as np

from ..runtime import StaticMemory
from .dcgan import draw_z

Z_DISTS = ("uniform", "normal")


class TrainStep:
    """Runs ``model.train_step`` on device-resident state; see the module docstring.

    Args:
        model: a :class:`~rawgan.models.dcgan.DCGAN`.
        batch_size: N of every batch (a different N is an error: the buffers are per batch size).
        z_gen: the :class:`~rawgan.backend.PhiloxState` of z; bound to the model's backend here.
        z_dist: "uniform" (U[−1, 1), the default) or "normal" (N(0, 1)).
        g_steps: G updates per D update.
        graph: capture the step as a graph after one warm-up step (CUDA backends only).
        image_shape: (H, W, C) of the uint8 batches (64, 64, 3).
    Attributes: ``x``, ``z`` (the latest float batch and z, device arrays), ``metrics`` (0-d
    device arrays of the latest step), ``graph`` (the captured graph or None), ``memory``.
    Raises ValueError for a bad z_dist or a batch of the wrong shape/dtype.
    """

    def __init__(self, model, batch_size: int, z_gen, z_dist: str = "uniform", g_steps: int = 2,
                 graph: bool = True, image_shape=(64, 64, 3)):
        if z_dist not in Z_DISTS:
            raise ValueError(f"TrainStep: z_dist must be one of {Z_DISTS}, got {z_dist!r}")
        B = model.B
        self.model, self.B, self.z_gen = model, B, z_gen
        self.z_dist, self.g_steps = z_dist, int(g_steps)
        self.rt = getattr(B.ops, "rt", None)
        self.use_graph = bool(graph) and self.rt is not None
        self.memory = StaticMemory(self.rt) if self.rt is not None else None
        self.shape = (int(batch_size), *(int(d) for d in image_shape))
        self.images = B.asarray(np.zeros(self.shape, dtype=np.uint8), dtype=np.uint8)
        z_gen.bind(B)
        self.graph = None
        self.steps_run = 0
        self.x = self.z = self.metrics = None

    # -- the body: everything that runs on the device ------------------------------------------
    def _body(self) -> dict:
        B, model = self.B, self.model
        x = B.ops.images_to_float(self.images)
        z = draw_z(B, self.z_gen, self.shape[0], model.z_dim, self.z_dist)
        metrics = model.train_step(x, z, self.g_steps)
        self.x, self.z = x, z
        return metrics

    def _eager(self) -> dict:
        if self.rt is None:
            return self._body()
        with self.rt.static_memory(self.memory):
            return self._body()

    def _capture(self):
        with self.rt.capture() as graph:
            with self.rt.static_memory(self.memory):
                self.metrics = self._body()
        return graph

    # -- public ---------------------------------------------------------------------------------
    def upload(self, images: np.ndarray) -> None:
        """Copy a uint8 (N, H, W, C) host batch into the fixed device buffer."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or tuple(images.shape) != self.shape:
            raise ValueError(f"TrainStep: expected a uint8 batch of shape {self.shape}, got "
                             f"{images.dtype} {tuple(images.shape)}")
        if self.rt is None:
            self.images[...] = images
        else:
            self.rt.upload(self.images, images)

    def __call__(self, images: np.ndarray) -> dict:
        """One training iteration on the uint8 host batch ``images``; returns the metrics (0-d
        device arrays; with a graph, the same buffers at every step)."""
        if self.steps_run == 0 and self.rt is not None:
            self.rt.synchronize()          # state written before the first step is in place
        self.upload(images)
        if not self.use_graph or self.steps_run == 0:
            self.metrics = self._eager()
        else:
            if self.graph is None:
                self.graph = self._capture()
            self.graph.launch()
        self.steps_run += 1
        return self.metrics

    def read_metrics(self) -> dict:
        """The latest step's metrics as Python floats: one device-to-host copy of the step's
        scalar block (StaticMemory.scalars) on cupy/emulated — the one host synchronisation of
        a log step, outside the graph; on NumPy the values themselves."""
        mem = self.memory
        index = {k: mem.scalar_index(v) for k, v in self.metrics.items()} if mem is not None else {}
        if index and all(i is not None for i in index.values()):
            block = self.B.to_numpy(mem.scalars)
            return {k: float(block[i]) for k, i in index.items()}
        return {k: float(self.B.to_numpy(v)) for k, v in self.metrics.items()}
