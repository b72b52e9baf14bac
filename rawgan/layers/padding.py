"""Padding rules for (transposed) convolutions, per side: ``(top, bottom, left, right)``."""


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    if len(v) != 2:
        raise ValueError(f"{name}: expected an int or a pair, got {v!r}")
    return tuple(int(a) for a in v)


def same_padding(size, k, stride):
    """TensorFlow "SAME" padding along one axis for an input of length ``size``.

    Output length ceil(size/stride); total padding max((out−1)·stride + k − size, 0), the odd
    pixel going *after* (k=5, s=2, even size: 1 before, 2 after). Source: TensorFlow
    ``tf.nn.convolution`` docs, "SAME" padding. Returns ``(before, after)``.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def explicit_padding(padding):
    """int | (ph, pw) | (top, bottom, left, right) -> (top, bottom, left, right).

    Raises ValueError for any other form or a negative entry.
    """
    if isinstance(padding, int):
        pad = (padding,) * 4
    else:
        padding = tuple(int(p) for p in padding)
        if len(padding) == 2:
            pad = (padding[0], padding[0], padding[1], padding[1])
        elif len(padding) == 4:
            pad = padding
        else:
            raise ValueError(f"padding: expected 'same', an int, (ph, pw) or "
                             f"(top, bottom, left, right); got {padding!r}")
    if min(pad) < 0:
        raise ValueError(f"padding: entries must be >= 0, got {pad}")
    return pad


def conv_geometry(kernel_size, stride, padding):
    """Normalise a (transposed) convolution's geometry arguments.

    Returns ``((kh, kw), (sh, sw), padding)`` where padding is ``"same"`` or
    (top, bottom, left, right); ``"valid"`` means no padding. Raises ValueError naming the
    argument for a non-positive kernel size or stride, or an unknown padding string.
    """
    kernel_size, stride = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
    if min(kernel_size) < 1 or min(stride) < 1:
        raise ValueError(f"kernel_size {kernel_size} and stride {stride} must be >= 1")
    if isinstance(padding, str):
        if padding.lower() not in ("same", "valid"):
            raise ValueError(f"padding: expected 'same', 'valid', an int, (ph, pw) or "
                             f"(top, bottom, left, right); got {padding!r}")
        padding = "same" if padding.lower() == "same" else (0, 0, 0, 0)
    else:
        padding = explicit_padding(padding)
    return kernel_size, stride, padding
