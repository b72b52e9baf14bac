"""Batch normalization layer (train and eval modes)."""
import contextlib

import numpy as np

from ..backend.reference.batchnorm import ghost_split
from .base import Layer
from .conv2d import Conv2d
from .geometry import check_sizes


class BatchNorm(Layer):
    """Per-channel batch normalization over (N, H, W) for 4-D input, per feature for 2-D input.

    Training mode normalizes with batch statistics and updates ``running_mean``/``running_var``
    (buffers) with ``momentum`` (PyTorch convention; 0.1 = TensorFlow decay 0.9). By default the
    running variance stores the *biased* batch variance (TensorFlow's convention, as in the DCGAN
    reference); ``unbiased_running_var=True`` gives PyTorch's. Eval mode uses the running
    statistics. eps = 1e-5. Math and sources: rawgan.backend.reference.batchnorm.

    ``ghost_batches`` (attribute, int >= 1, default 1; Hoffer et al. 2017, "Train longer,
    generalize better"): in training mode the batch of N is split into that many equal
    consecutive sub-batches, each normalised with its own statistics (and the running statistics
    updated once per sub-batch, in order) — the values of separate forward/backward passes over
    the sub-batches, in one pass. The backward uses the value the forward ran with. The DCGAN's D
    runs its real and fake halves this way (:func:`ghost_batches` context).

    Parameters: ``gamma`` (C,) = 1, ``beta`` (C,) = 0 (or gamma ~ N(1, gamma_std²) if given).
    Raises ValueError for an input that is not 2-D/4-D, a channel or dtype mismatch, a
    training-mode batch (or ghost sub-batch) with a single value per channel (variance
    undefined), a ``ghost_batches`` that is not an int >= 1 or does not divide N.
    """

    def __init__(self, backend, num_features, momentum=0.1, eps=1e-5, unbiased_running_var=False,
                 rng=None, gamma_std=0.0, ghost_batches=1):
        super().__init__(backend)
        check_sizes("BatchNorm", num_features=num_features)
        self.num_features = num_features
        self.momentum, self.eps, self.unbiased = momentum, eps, unbiased_running_var
        self.ghost_batches = ghost_batches
        gamma = np.ones(num_features)
        if gamma_std:
            gamma = (rng or np.random.default_rng(0)).normal(1.0, gamma_std, num_features)
        self._add_param("gamma", gamma)
        self._add_param("beta", np.zeros(num_features))
        self.buffers["running_mean"] = backend.zeros((num_features,))
        self.buffers["running_var"] = backend.asarray(np.ones(num_features))

    def _check_bn_input(self, x) -> int:
        """Checks ``x`` for this mode; returns the ghost batches its training forward uses (1 in
        eval mode). Sets nothing, so a rejected input leaves the last forward's state (its x,
        saved statistics and G) for its backward."""
        if not hasattr(x, "dtype") or x.ndim not in (2, 4):
            raise ValueError(f"{self}: expected a 2-D (N, F) or 4-D (N, C, H, W) input, got shape "
                             f"{tuple(getattr(x, 'shape', ()))}")
        self._check_input(x, x.ndim, {1: ("num_features", self.num_features)})
        if self.training and x.size // x.shape[1] < 2:
            raise ValueError(f"{self}: training mode needs more than one value per channel, "
                             f"got input of shape {tuple(x.shape)}")
        if self.training:
            try:                                 # the ops' own check, named after this layer
                return ghost_split(x, self.ghost_batches)
            except ValueError as e:
                raise ValueError(f"{self}: {str(e).removeprefix('batchnorm: ')}") from None
        return 1

    def forward(self, x):
        ghost = self._check_bn_input(x)
        ops, p, buf = self.B.ops, self.params, self.buffers
        self.x, self.mode_train, self.ghost = x, self.training, ghost   # G: what backward uses
        if self.training:
            y, self.save_mean, self.save_invstd = ops.batchnorm_forward_train(
                x, p["gamma"], p["beta"], buf["running_mean"], buf["running_var"],
                self.momentum, self.eps, self.unbiased, self.ghost)
            return self._out(y)
        return self._out(ops.batchnorm_forward_eval(x, p["gamma"], p["beta"], buf["running_mean"],
                                                    buf["running_var"], self.eps))

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        ops, p, buf = self.B.ops, self.params, self.buffers
        # Parameter gradients go straight into grads (written or added to); without
        # requires_grad the op returns them in new buffers that nobody reads.
        out = (self.grads["gamma"], self.grads["beta"]) if self.requires_grad else (None, None)
        acc = self._accumulate_grads() if self.requires_grad else False
        if self.mode_train:
            dx, _, _ = ops.batchnorm_backward_train(dy, self.x, p["gamma"], self.save_mean,
                                                    self.save_invstd, *out, accumulate=acc,
                                                    ghost_batches=self.ghost)
        else:
            dx, _, _ = ops.batchnorm_backward_eval(dy, self.x, p["gamma"], buf["running_mean"],
                                                   buf["running_var"], self.eps, *out,
                                                   accumulate=acc)
        return dx if need_dx else None

    def __repr__(self):
        return f"BatchNorm({self.num_features})"


class BatchNormAct(BatchNorm):
    """BatchNorm followed by ReLU or LeakyReLU(slope), as one layer and one fused op.

    y = act(BN(x)) with BatchNorm's parameters, buffers, modes and checks (see
    :class:`BatchNorm`); ``act`` is "relu" or "leaky_relu" (``slope`` > 0, DCGAN's D: 0.2).
    Same values as ``BatchNorm`` then ``ReLU``/``LeakyReLU`` — the reference backend computes
    exactly that composition (rawgan.backend.reference.batchnorm, ``batchnorm_act_*``) — but on
    the CUDA backend the activation runs inside the BN kernels (forward: applied as y is
    written; backward: dy times the activation's derivative, read off the sign of the saved
    output y, as the BN backward reads dy), saving a launch and a full read/write of the
    activation per pass. Why a layer and not a model-level fusion pass: the fused op has its own
    forward/backward pair, and a layer keeps them side by side, like every other op.
    Raises ValueError for another ``act`` or a slope <= 0 (the backward needs
    sign(y) = sign(BN(x))), and as BatchNorm for bad input.
    """

    ACTS = ("relu", "leaky_relu")
    computes_folded_bias_grad = True   # a conv bias folded in (fold_bias_into_bn): its gradient
                                       # comes from this layer's backward (Conv2d skips bias_grad)

    def __init__(self, backend, num_features, act="relu", slope=0.2, **kwargs):
        super().__init__(backend, num_features, **kwargs)
        if act not in self.ACTS:
            raise ValueError(f"BatchNormAct: act must be one of {self.ACTS}, got {act!r}")
        if act == "leaky_relu" and not float(slope) > 0:
            raise ValueError(f"BatchNormAct: the LeakyReLU slope must be > 0, got {slope!r}")
        self.act, self.slope = act, float(slope) if act == "leaky_relu" else 0.0
        self.bias_from = None          # the Conv2d whose bias is folded in (fold_bias_into_bn)

    def forward(self, x):
        ghost = self._check_bn_input(x)
        ops, p, buf = self.B.ops, self.params, self.buffers
        self.x, self.mode_train, self.ghost = x, self.training, ghost   # G: what backward uses
        if self.training:
            in_bias = self.bias_from.params["b"] if self.bias_from is not None else None
            self.y, self.save_mean, self.save_invstd = ops.batchnorm_act_forward_train(
                x, p["gamma"], p["beta"], buf["running_mean"], buf["running_var"],
                self.momentum, self.eps, self.unbiased, self.act, self.slope, in_bias, self.ghost)
        else:
            self.y = ops.batchnorm_act_forward_eval(x, p["gamma"], p["beta"], buf["running_mean"],
                                                    buf["running_var"], self.eps, self.act,
                                                    self.slope)
        return self._out(self.y)

    def backward(self, dy, need_dx=True):
        self._check_grad(dy)
        ops, p, buf = self.B.ops, self.params, self.buffers
        out = (self.grads["gamma"], self.grads["beta"]) if self.requires_grad else (None, None)
        acc = self._accumulate_grads() if self.requires_grad else False
        if self.mode_train:
            conv = self.bias_from
            if conv is not None and conv.requires_grad and conv.bias_grad_by is self:
                # the folded bias's gradient (Σ dx) from the BN backward kernels themselves;
                # conv's backward (next) skips its bias_grad, and writes or adds as we do here
                db_out = conv.grads["b"]
                acc_b = conv._next_grads_accumulate()
            else:
                db_out, acc_b = None, acc
            # one accumulate flag for all the op's gradients: when ours and conv's differ (only
            # after a lazy zero_grad of one of the two layers), b's gradient is a bias_grad
            fused = db_out is not None and (out[0] is None or acc_b == acc)
            dx, _, _ = ops.batchnorm_act_backward_train(
                dy, self.y, self.x, p["gamma"], self.save_mean, self.save_invstd, self.act,
                self.slope, *out, accumulate=acc_b if fused else acc, ghost_batches=self.ghost,
                dbias_out=db_out if fused else None)
            if db_out is not None and not fused:
                ops.bias_grad(dx, out=db_out, accumulate=acc_b)
        else:
            dx, _, _ = ops.batchnorm_act_backward_eval(
                dy, self.y, self.x, p["gamma"], buf["running_mean"], buf["running_var"], self.eps,
                self.act, self.slope, *out, accumulate=acc)
        return dx if need_dx else None

    def __repr__(self):
        return (f"BatchNormAct({self.num_features}, {self.act}"
                + (f"({self.slope:g}))" if self.act == "leaky_relu" else ")"))


def fold_bias_into_bn(conv, bn: BatchNormAct) -> None:
    """Fold ``conv``'s per-channel bias into the training-mode forward of the BatchNormAct
    ``bn`` that directly follows it: conv then skips ``+ b`` and bn normalises conv's output as
    if b were added. Exact — train-mode BN subtracts the batch mean, so x + b and x give the same
    output and statistics; only the running mean, which tracks mean(x + b), gets + b (inside the
    BN kernel on CUDA; rawgan.backend.reference.batchnorm.batchnorm_act_forward_train, in_bias,
    is the plain formula). b's gradient is unchanged: the sum of conv's dy (BN's dx) — computed
    by bn's backward kernels as they write dx (the ``dbias_out`` of
    ``batchnorm_act_backward_train``), so conv's backward skips its bias_grad. In eval mode
    (running statistics) conv adds its bias as usual. Saves one bias_add launch per training
    forward and one bias_grad launch per backward. Raises ValueError unless conv is a Conv2d
    (the only layer that skips a folded bias) with a bias of bn's channels and bn a BatchNormAct
    (a plain BatchNorm would leave the running mean without + b).
    """
    if not isinstance(conv, Conv2d) or not isinstance(bn, BatchNormAct):
        raise ValueError(f"fold_bias_into_bn: needs a Conv2d and a BatchNormAct, got {conv} "
                         f"and {bn}")
    if "b" not in conv.params or tuple(conv.params["b"].shape) != (bn.num_features,):
        raise ValueError(f"fold_bias_into_bn: {conv} has no per-channel bias of "
                         f"{bn.num_features} channels for {bn}")
    conv.bias_into, bn.bias_from = bn, conv


def bn_layers(net) -> list:
    """Every BatchNorm (and BatchNormAct) layer of ``net`` — a layer or a possibly nested
    Sequential — in no particular order."""
    layers, stack = [], [net]
    while stack:
        layer = stack.pop()
        if isinstance(layer, BatchNorm):
            layers.append(layer)
        stack.extend(getattr(layer, "layers", ()))
    return layers


@contextlib.contextmanager
def ghost_batches(net, G: int):
    """Within the block, every BatchNorm (and BatchNormAct) layer of ``net`` (a layer or a
    possibly nested Sequential) normalises training batches in ``G`` ghost batches
    (:class:`BatchNorm`); on exit each gets its previous ``ghost_batches`` back (also on an
    exception). A forward run inside the block keeps its G for its backward, even if the
    backward runs outside."""
    layers = bn_layers(net)
    saved = [(layer, layer.ghost_batches) for layer in layers]
    try:
        for layer in layers:
            layer.ghost_batches = G
        yield net
    finally:
        for layer, g in saved:
            layer.ghost_batches = g
