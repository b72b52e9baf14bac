"""Geometry arguments of the layers: sizes, kernel/stride pairs, and padding per side
``(top, bottom, left, right)`` for (transposed) convolutions."""
import numpy as np



def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _pair(v, name):
    """int or pair of ints -> (a, b). Raises ValueError naming the argument otherwise."""
    if _is_int(v):
        return (int(v), int(v))
    if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_int(a) for a in v)):
        raise ValueError(f"{name}: expected an int or a pair of ints, got {v!r}")
    return (int(v[0]), int(v[1]))


def check_sizes(layer_name, **sizes):
    """Raise ValueError unless every given size is an int >= 1 (e.g. in_channels=3)."""
    for k, v in sizes.items():
        if not _is_int(v) or v < 1:
            raise ValueError(f"{layer_name}: {k} must be a positive int, got {v!r}")


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
    if _is_int(padding):
        pad = (int(padding),) * 4
    else:
        if not (isinstance(padding, (tuple, list)) and all(_is_int(p) for p in padding)):
            raise ValueError(f"padding: expected 'same', 'valid', an int, (ph, pw) or "
                             f"(top, bottom, left, right); got {padding!r}")
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
