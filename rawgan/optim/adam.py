"""Adam over one flat parameter buffer (one op call — two kernel launches on the GPU — per step)."""
import numpy as np


class Adam:
    """Adam (Kingma & Ba 2015) with PyTorch's eps convention (eps added to √v̂; see
    rawgan.backend.reference.adam for the TensorFlow difference).

    Args:
        net: a ``Sequential`` whose parameters were packed by ``flatten_parameters`` (has
            ``flat_params``/``flat_grads``, 1-D, backend dtype).
        lr, beta1, beta2, eps: DCGAN uses lr=2e-4, beta1=0.5, beta2=0.999, eps=1e-8.
    State: ``m``, ``v`` (same shape as the flat buffer) and the step count, kept on the device in
    ``t_buf`` ((1,) int64) and advanced by the update itself (``ops.adam_step``), so a captured
    CUDA graph replays correct bias corrections. ``t`` reads it (a host synchronisation) and
    assigning ``t`` writes it. ``lr``/``betas``/``eps`` are passed by value at each call: a
    captured graph keeps the values of capture time.
    Raises ValueError if the network was not flattened or hyper-parameters are out of range.
    """

    def __init__(self, net, lr=2e-4, beta1=0.5, beta2=0.999, eps=1e-8):
        if not hasattr(net, "flat_params"):
            raise ValueError("Adam: call rawgan.layers.flatten_parameters(net) first")
        if not (lr > 0 and 0 <= beta1 < 1 and 0 <= beta2 < 1 and eps > 0):
            raise ValueError(f"Adam: need lr > 0, 0 <= beta1, beta2 < 1, eps > 0; got lr={lr}, "
                             f"beta1={beta1}, beta2={beta2}, eps={eps}")
        self.net, self.B = net, net.B
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = self.B.zeros(net.flat_params.shape)
        self.v = self.B.zeros(net.flat_params.shape)
        self.t_buf = self.B.asarray(np.zeros(1, dtype=np.int64), dtype=np.int64)

    @property
    def t(self) -> int:
        """The number of updates applied so far (read from the device)."""
        return int(self.B.to_numpy(self.t_buf)[0])

    @t.setter
    def t(self, value: int) -> None:
        self.t_buf[...] = self.B.asarray(np.array([int(value)], dtype=np.int64), dtype=np.int64)

    def step(self):
        """Apply one update from ``net.flat_grads`` to ``net.flat_params`` in place (the step
        count advances on the device; nothing is read back)."""
        self.B.ops.adam_step(self.net.flat_params, self.net.flat_grads, self.m, self.v, self.t_buf,
                             self.lr, self.beta1, self.beta2, self.eps)

    def state_dict(self) -> dict:
        """Host copies: {"m", "v": float arrays, "t": int, and the hyper-parameters}."""
        return {"m": self.B.to_numpy(self.m), "v": self.B.to_numpy(self.v), "t": self.t,
                "lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def load_state_dict(self, state: dict) -> None:
        """Restore m, v, t (and hyper-parameters). Raises ValueError on a size mismatch."""
        m, v = np.asarray(state["m"]), np.asarray(state["v"])
        if m.shape != tuple(self.m.shape) or v.shape != tuple(self.v.shape):
            raise ValueError(f"Adam.load_state_dict: state has {m.shape[0]} entries, the network "
                             f"has {self.m.shape[0]} parameters")
        self.m[...] = self.B.asarray(m)
        self.v[...] = self.B.asarray(v)
        self.t = int(state["t"])
        for k in ("lr", "beta1", "beta2", "eps"):
            if k in state:
                setattr(self, k, float(state[k]))
