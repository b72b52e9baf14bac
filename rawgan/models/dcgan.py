"""DCGAN (Radford, Metz, Chintala 2015) as used by Zhu et al. (JSIP 2018) for 64×64 faces.

Sizes follow the TensorFlow reference the paper matches (carpedm20/DCGAN-tensorflow, 2017–18):

    G: z (N, 100) → Linear → (N, 512, 4, 4) → BN → ReLU
       → ConvT 5×5/2 → 256×8×8 → BN → ReLU → 128×16×16 → BN → ReLU → 64×32×32 → BN → ReLU
       → ConvT 5×5/2 → 3×64×64 → tanh
    D: x (N, 3, 64, 64) → Conv 5×5/2 SAME → 64×32×32 → LeakyReLU(0.2)            (no BN)
       → 128×16×16 → BN → LReLU → 256×8×8 → BN → LReLU → 512×4×4 → BN → LReLU
       → flatten (8192) → Linear → 1 logit

BN + ReLU/LeakyReLU pairs are ``BatchNormAct`` layers (one fused op on the CUDA backend; the
same values as the two layers); D's conv biases before them are folded into their training
forward (``fold_bias_into_bn``: exact, BN subtracts the batch mean; the bias still trains, its
gradient summed by BN's backward, and still shifts the running mean), and conv1's into its
LeakyReLU (``fold_bias_into_act``). Parameter gradients are written straight into the flat
gradient buffers (``zero_grad(lazy=True)``: no fill or accumulate kernels; see layers/base.py).
Biases on every conv/linear; weights N(0, 0.02) (the TF code uses a truncated normal for D's
convs — a 2σ truncation that changes nothing measurable; we use the plain normal everywhere, as
the DCGAN paper states), biases 0, BN γ = 1, β = 0, momentum 0.1 (TF decay 0.9), eps 1e-5.
Parameter counts at the defaults: G 5,135,363, D 4,316,545.

Losses (sigmoid cross-entropy with logits, mean over the batch): d_loss = d_loss_real (target 1)
+ d_loss_fake (target 0); g_loss is the non-saturating loss (fake with target 1). D's BN statistics
are real-only / fake-only, as in the reference's separate passes; by default (``d_one_pass``) the
D update runs both as ONE batch of 2N (real then fake) whose BN layers normalise each half with
its own statistics ("ghost batches", Hoffer et al. 2017) — the values of the two passes (up to
float summation order in the convolutions' weight gradients) in half the launches of D.
Each iteration: one D update, then ``g_steps`` G updates on the same z (TF: 2).

G's forward is computed once for the D update and the first G update (``reuse_g_forward``,
default on): both run G on the same z with the same weights (the D update changes only D) in
training mode, so the TF reference's second forward gives bit for bit the same activations and
the same batch statistics. What it does besides is a second update of G's BN running statistics
with those same statistics; two updates r ← (1−m)·r + m·s in a row equal one with momentum
1 − (1−m)² (``running_updates``), which G's BN layers apply in the shared forward. Saves a whole
G forward per iteration (≈ 20 launches on the CUDA backend); ``reuse_g_forward=False`` runs the
reference's literal order.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..layers import (BatchNormAct, Conv2d, ConvTranspose2d, Flatten, LeakyReLU, Linear,
                      Reshape, Sequential, SigmoidBCEWithLogits, Tanh, flatten_parameters,
                      bn_layers, fold_bias_into_act, fold_bias_into_bn, ghost_batches)
from ..optim import Adam


def build_generator(B, z_dim=100, ngf=64, channels=3, image_size=64, rng=None):
    """DCGAN generator: z (N, z_dim) -> images (N, channels, image_size, image_size) in [−1, 1].

    ``image_size`` must be a multiple of 16 (four stride-2 upsamplings from image_size/16).
    Returns a flattened ``Sequential``. Raises ValueError for a bad image_size.
    """
    if image_size % 16:
        raise ValueError(f"build_generator: image_size must be a multiple of 16, got {image_size}")
    rng = rng if rng is not None else np.random.default_rng(0)
    s = image_size // 16
    c = [ngf * 8, ngf * 4, ngf * 2, ngf]
    layers = [Linear(B, z_dim, c[0] * s * s, rng=rng), Reshape(B, (c[0], s, s)),
              BatchNormAct(B, c[0], "relu")]
    for cin, cout in zip(c[:-1], c[1:]):
        layers += [ConvTranspose2d(B, cin, cout, 5, 2, "same", rng=rng), BatchNormAct(B, cout, "relu")]
    layers += [ConvTranspose2d(B, c[-1], channels, 5, 2, "same", rng=rng), Tanh(B)]
    net = Sequential(B, layers)
    flatten_parameters(net)
    return net


def build_discriminator(B, ndf=64, channels=3, image_size=64, rng=None):
    """DCGAN discriminator: images (N, channels, image_size, image_size) -> logits (N, 1).

    Returns a flattened ``Sequential``. Raises ValueError for a bad image_size.
    """
    if image_size % 16:
        raise ValueError(f"build_discriminator: image_size must be a multiple of 16, got {image_size}")
    rng = rng if rng is not None else np.random.default_rng(1)
    s = image_size // 16
    c = [ndf, ndf * 2, ndf * 4, ndf * 8]
    conv1, act1 = Conv2d(B, channels, c[0], 5, 2, "same", rng=rng), LeakyReLU(B, 0.2)
    fold_bias_into_act(conv1, act1)          # conv1's + b happens inside the LeakyReLU
    layers = [conv1, act1]
    for cin, cout in zip(c[:-1], c[1:]):
        conv, bn = Conv2d(B, cin, cout, 5, 2, "same", rng=rng), BatchNormAct(B, cout, "leaky_relu", 0.2)
        fold_bias_into_bn(conv, bn)          # conv's + b only in bn's running mean; db from bn
        layers += [conv, bn]
    layers += [Flatten(B), Linear(B, c[-1] * s * s, 1, rng=rng)]
    net = Sequential(B, layers)
    flatten_parameters(net)
    return net


class DCGAN:
    """Generator, discriminator, their Adam optimizers and the training step.

    Args:
        B: backend. z_dim, ngf, ndf: sizes (100, 64, 64). lr, beta1, beta2, eps: Adam
        (2e-4, 0.5, 0.999, 1e-8). seed: weight init (numpy Generator, so every backend starts
        from the same weights). reuse_g_forward: the D update's G(z) also serves the first G
        update (module docstring); False recomputes it, as the TF reference does. d_one_pass:
        D's update as one pass over the real and fake samples with per-half BN statistics
        (default), or as two passes (False; the same math).
    All metrics are returned as 0-d backend arrays so a step never synchronises with the host;
    every piece of a step is a backend op (on the CUDA backend: kernel launches and rt.gemm only),
    so rawgan.models.step can run it from static memory and capture it as one CUDA graph.
    """

    def __init__(self, B, z_dim=100, ngf=64, ndf=64, channels=3, image_size=64, lr=2e-4,
                 beta1=0.5, beta2=0.999, eps=1e-8, seed=0, reuse_g_forward=True,
                 d_one_pass=True):
        self.B, self.z_dim = B, z_dim
        self.reuse_g_forward = bool(reuse_g_forward)
        self.d_one_pass = bool(d_one_pass)
        self._fake = self._fake_z = None          # the D update's G(z) and z, for the first G update
        self._fake_updates = 0                    # ... and the running updates it stood for
        self.image_shape = (channels, image_size, image_size)
        rng = np.random.default_rng([seed, 0xDC6A])
        self.G = build_generator(B, z_dim, ngf, channels, image_size, rng=rng)
        self.D = build_discriminator(B, ndf, channels, image_size, rng=rng)
        self.opt_G = Adam(self.G, lr, beta1, beta2, eps)
        self.opt_D = Adam(self.D, lr, beta1, beta2, eps)
        self.loss = SigmoidBCEWithLogits(B)

    def d_step(self, x_real, z, g_running_updates=1):
        """One D update on a real batch and G(z). Returns dict of 0-d arrays:
        d_loss_real, d_loss_fake, d_loss, d_real (mean σ(D(x))), d_fake (mean σ(D(G(z)))).

        ``g_running_updates``: how many forwards G(z) stands for in G's BN running statistics
        (2 when the next G update reuses it: see ``running_updates``). G's activations stay
        cached, so ``g_step(z, reuse_forward=True)`` can backpropagate through them.

        ``d_one_pass``: D runs forward and backward once over the 2N samples (x_real then G(z),
        ``ops.concat_batch``) with 2 ghost batches in its BN layers, and one loss kernel gives
        both halves' losses (targets 1 and 0), gradients (each half's mean) and D(x) means; else
        a real pass then a fake pass. Same values: BN statistics and running updates per half in
        the same order, gradients the sum of the halves'. Raises ValueError in one pass when
        x_real and z differ in batch size or x_real is not of G's output shape and dtype (before
        anything runs: no state changes)."""
        G, D, loss = self.G, self.D, self.loss
        if self.d_one_pass and x_real.shape[0] != z.shape[0]:   # before any state changes
            raise ValueError(f"d_step: the real batch ({x_real.shape[0]}) and z "
                             f"({z.shape[0]}) must have the same size in one pass")
        if self.d_one_pass and (tuple(x_real.shape[1:]) != self.image_shape
                                or x_real.dtype != self.B.dtype):
            raise ValueError(f"d_step: the real batch must be {self.B.dtype.name} "
                             f"(N, {', '.join(map(str, self.image_shape))}) like G's output, got "
                             f"{x_real.dtype} {tuple(x_real.shape)}")
        G.train()
        D.train()
        D.set_requires_grad(True)
        D.zero_grad(lazy=True)                    # the (real) backward writes them, a fake one adds
        with running_updates(G, g_running_updates):
            fake = self._fake = G.forward(z)      # kept for g_step(reuse_forward=True)
        self._fake_z, self._fake_updates = z, int(g_running_updates)
        if self.d_one_pass:
            both = self.B.ops.concat_batch(x_real, fake)
            with ghost_batches(D, 2):             # BN: real half, then fake half, own statistics
                (l_real, l_fake), dlogits, (d_real, d_fake), d_loss = \
                    loss.forward_backward_halves(D.forward(both), (1.0, 0.0))
                D.backward(dlogits, need_dx=False)
            self.opt_D.step()
            return {"d_loss_real": l_real, "d_loss_fake": l_fake, "d_loss": d_loss,
                    "d_real": d_real, "d_fake": d_fake}
        # loss.forward_backward = loss.forward + loss.backward() + sigmoid_mean (one kernel on CUDA)
        l_real, dlogits, d_real = loss.forward_backward(D.forward(x_real), 1.0)
        D.backward(dlogits, need_dx=False)
        l_fake, dlogits, d_fake = loss.forward_backward(D.forward(fake), 0.0)
        D.backward(dlogits, need_dx=False)
        self.opt_D.step()
        return {"d_loss_real": l_real, "d_loss_fake": l_fake,
                "d_loss": self.B.ops.scalar_add(l_real, l_fake), "d_real": d_real, "d_fake": d_fake}

    def g_step(self, z, reuse_forward=False):
        """One G update with the non-saturating loss on D(G(z)). Returns {"g_loss", "d_fake_g"}.

        ``reuse_forward``: G's last forward was G(z) with G's current weights (the D update's,
        from ``d_step(z, g_running_updates=2)``); its cached activations and output are used
        instead of running G again. Raises RuntimeError when that is not so: no d_step since the
        last G update, one whose G forward counted once in G's running statistics
        (g_running_updates = 1), another z object, or another G forward in between."""
        G, D, loss = self.G, self.D, self.loss
        if reuse_forward and (self._fake is None or z is not self._fake_z
                              or getattr(G, "output", None) is not self._fake
                              or self._fake_updates < 2):
            raise RuntimeError("g_step(reuse_forward=True) needs a d_step(z, g_running_updates="
                               ">= 2) first, on the same z and with no other G forward in between")
        G.train()
        D.train()
        D.set_requires_grad(False)               # D's weight gradients are not needed here
        G.zero_grad(lazy=True)                    # the backward writes the gradients
        fake = self._fake if reuse_forward else G.forward(z)
        self._fake = None                         # G's weights change below
        g_loss, dlogits, d_fake_g = loss.forward_backward(D.forward(fake), 1.0)
        G.backward(D.backward(dlogits), need_dx=False)
        D.set_requires_grad(True)
        self.opt_G.step()
        return {"g_loss": g_loss, "d_fake_g": d_fake_g}

    def train_step(self, x_real, z, g_steps=2):
        """One iteration: a D update then ``g_steps`` G updates on the same z.

        Returns the D metrics and the *last* G update's g_loss (0-d backend arrays).
        """
        reuse = self.reuse_g_forward and g_steps >= 1
        metrics = self.d_step(x_real, z, g_running_updates=2 if reuse else 1)
        for i in range(g_steps):
            metrics.update(self.g_step(z, reuse_forward=reuse and i == 0))
        return metrics

    def sample(self, z, eval_mode=True):
        """G(z) as (N, C, H, W) in [−1, 1]; eval mode uses BN running statistics (TF reference)."""
        self.G.train(not eval_mode)
        self._fake = None                         # G's cached activations are replaced
        try:
            return self.G.forward(z)
        finally:
            self.G.train(True)


def draw_z(B, stream, n: int, z_dim: int, z_dist: str = "uniform"):
    """(n, z_dim) latent vectors of the backend's dtype from the Philox stream ``stream`` (a
    ``rawgan.backend.PhiloxState``, advanced by n * z_dim draws; an int stands for a new stream of
    that seed): uniform(-1, 1) (``z_dist="uniform"``, the TF reference) or N(0, 1) (``"normal"``).
    Raises ValueError for another ``z_dist``."""
    from ..backend import PhiloxState

    if isinstance(stream, (int, np.integer)):
        stream = PhiloxState(int(stream))
    if z_dist == "normal":
        return B.normal(stream, (n, z_dim))
    if z_dist == "uniform":
        return B.uniform(stream, (n, z_dim), -1.0, 1.0)
    raise ValueError(f"z_dist must be 'uniform' or 'normal', got {z_dist!r}")


@contextlib.contextmanager
def running_updates(net, k: int):
    """Within the block, each train-mode forward of ``net``'s BatchNorm layers updates their
    running statistics as ``k`` forwards of the same batch would: k updates
    r ← (1−m)·r + m·s with the same s are one with momentum 1 − (1−m)^k (equal up to float32
    rounding). ``k`` = 1 changes nothing. Raises ValueError unless k is an int >= 1 (a float
    such as 1.5 was truncated, a string accepted)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"running_updates: k must be an int >= 1, got {k!r}")
    layers = bn_layers(net)
    saved = [l.momentum for l in layers]
    for l in layers:
        l.momentum = 1.0 - (1.0 - l.momentum) ** int(k)
    try:
        yield
    finally:
        for l, m in zip(layers, saved):
            l.momentum = m


@contextlib.contextmanager
def frozen_buffers(*nets):
    """Run train-mode forwards of ``nets`` without changing their BN running statistics: the
    buffers are copied on entry and written back on exit (also on an exception)."""
    saved = [(buf, buf.copy()) for net in nets for _, buf in net.named_buffers()]
    try:
        yield
    finally:
        for buf, copy in saved:
            buf[...] = copy
