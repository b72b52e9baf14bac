"""Layer protocol, Sequential, and flat parameter buffers.

A layer owns ``params`` and ``grads`` (dicts name -> backend array, same shapes) and ``buffers``
(non-trained state such as BatchNorm's running statistics). ``forward(x)`` caches what backward
needs; ``backward(dy, need_dx=True)`` *accumulates* parameter gradients into ``grads`` (so the
discriminator can sum the gradients of its real and fake passes) and returns dx, or None when
``need_dx`` is False (e.g. D's first layer, whose input gradient nobody uses). Setting
``requires_grad = False`` skips the parameter gradients (D's weights during the G update).

Gradients are written straight into the ``grads`` buffers by the ops themselves (the ops' ``out``
/ ``*_out`` arguments: on the CUDA backend the GEMM's beta = 0/1 and the reduction kernels'
``accumulate`` flag), never through separate accumulate or fill kernels: ``zero_grad(lazy=True)``
launches nothing and makes each layer's next backward *write* its gradients (beta = 0), later
backwards *add* (beta = 1) — D's real pass writes, its fake pass adds. ``zero_grad()`` (not
lazy) fills the buffers with zeros, as before.
"""
from __future__ import annotations

import numpy as np


class Layer:
    """Base class; subclasses implement ``forward`` and ``backward``."""

    def __init__(self, backend):
        self.B = backend
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.training = True
        self.requires_grad = True
        self._grads_stale = False     # zero_grad(lazy=True): the next backward writes, not adds
        self.bias_into = None         # Conv2d: the BatchNormAct/LeakyReLU its bias is folded into

    # -- bookkeeping --------------------------------------------------------------------------
    def _add_param(self, name, value: np.ndarray):
        self.params[name] = self.B.asarray(value)
        self.grads[name] = self.B.zeros(value.shape)

    def zero_grad(self, lazy: bool = False):
        """Zero the gradients: with ``lazy`` no kernel runs and the next backward overwrites them
        (their values are stale until then); else ``ops.fill`` them with 0."""
        if lazy:
            self._grads_stale = True
            return
        for g in self.grads.values():
            self.B.ops.fill(g, 0.0)

    def _accumulate_grads(self) -> bool:
        """For a backward about to produce parameter gradients: False (write them) for the first
        backward after ``zero_grad(lazy=True)``, True (add to them) otherwise."""
        accumulate = not self._grads_stale
        self._grads_stale = False
        return accumulate

    def _next_grads_accumulate(self) -> bool:
        """What the next :meth:`_accumulate_grads` will return, without consuming it: for a layer
        that writes one of this layer's gradients ahead of this layer's own backward
        (BatchNormAct and the conv bias folded into it, rawgan.layers.fold_bias_into_bn)."""
        return not self._grads_stale

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def named_params(self, prefix=""):
        """Yields ``(name, param, grad)`` in a fixed order."""
        for k in self.params:
            yield prefix + k, self.params[k], self.grads[k]

    def named_buffers(self, prefix=""):
        for k, v in self.buffers.items():
            yield prefix + k, v

    def num_params(self) -> int:
        return sum(int(p.size) for _, p, _ in self.named_params())

    def _check_input(self, x, ndim, dims: dict):
        """Raise ValueError naming this layer and the mismatched dimension.

        ``dims`` maps axis index -> (dimension name, expected size).
        """
        if not (hasattr(x, "shape") and hasattr(x, "dtype")):
            raise ValueError(f"{self}: expected a {ndim}-D array of the {self.B.name} backend, "
                             f"got {type(x).__name__}")
        if x.ndim != ndim:
            raise ValueError(f"{self}: expected a {ndim}-D input, got shape "
                             f"{tuple(getattr(x, 'shape', ()))}")
        if x.dtype != self.B.dtype:
            raise ValueError(f"{self}: expected dtype {self.B.dtype.name}, got {x.dtype}")
        for axis, (dim_name, expected) in dims.items():
            if x.shape[axis] != expected:
                raise ValueError(f"{self}: expected {dim_name}={expected} (axis {axis}) but got "
                                 f"input of shape {tuple(x.shape)}")

    def _out(self, y):
        """Record the output shape (for :meth:`_check_grad`) and return y."""
        self._y_shape = tuple(y.shape)
        return y

    def _check_grad(self, dy):
        """Raise RuntimeError if forward has not run, ValueError if dy is not output-shaped."""
        shape = getattr(self, "_y_shape", None)
        if shape is None:
            raise RuntimeError(f"{self}: backward called before forward")
        if tuple(getattr(dy, "shape", ())) != shape:
            raise ValueError(f"{self}: dy has shape {tuple(getattr(dy, 'shape', ()))}, expected "
                             f"the shape of the last output {shape}")

    def __call__(self, x):
        return self.forward(x)


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse."""

    def __init__(self, backend, layers):
        super().__init__(backend)
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        self.output = x             # the latest output, whose activations the layers now cache
        return x

    def backward(self, dy, need_dx=True):
        for i in range(len(self.layers) - 1, -1, -1):
            dy = self.layers[i].backward(dy, need_dx=need_dx or i > 0)
        return dy

    def train(self, mode=True):
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def set_requires_grad(self, flag: bool):
        self.requires_grad = flag
        for layer in self.layers:
            layer.requires_grad = flag

    def zero_grad(self, lazy: bool = False):
        for layer in self.layers:
            layer.zero_grad(lazy)

    def named_params(self, prefix=""):
        for i, layer in enumerate(self.layers):
            yield from layer.named_params(f"{prefix}{i}.")

    def named_buffers(self, prefix=""):
        for i, layer in enumerate(self.layers):
            yield from layer.named_buffers(f"{prefix}{i}.")

    def _owners(self):
        """(layer, key, full name) for every parameter, in named_params order."""
        out = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Sequential):
                out += [(l, k, f"{i}.{n}") for l, k, n in layer._owners()]
            else:
                out += [(layer, k, f"{i}.{k}") for k in layer.params]
        return out

    def __repr__(self):
        return "Sequential(" + ", ".join(repr(l) for l in self.layers) + ")"


def flatten_parameters(net: Sequential):
    """Move every parameter and gradient of ``net`` into one contiguous buffer each.

    After the call each layer's ``params[k]``/``grads[k]`` is a view into ``flat_params`` /
    ``flat_grads`` (1-D, backend dtype), so an optimizer updates the whole network with one call
    (one kernel launch on the GPU) and zero_grad is one fill. Returns ``(flat_params, flat_grads)``.
    """
    B = net.B
    owners = net._owners()
    total = sum(int(l.params[k].size) for l, k, _ in owners)
    flat_p, flat_g = B.zeros((total,)), B.zeros((total,))
    o = 0
    for layer, k, _ in owners:
        p = layer.params[k]
        n = int(p.size)
        pv, gv = flat_p[o:o + n].reshape(p.shape), flat_g[o:o + n].reshape(p.shape)
        pv[...] = p
        gv[...] = layer.grads[k]
        layer.params[k], layer.grads[k] = pv, gv
        o += n
    net.flat_params, net.flat_grads = flat_p, flat_g
    return flat_p, flat_g
