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
