"""Turning network outputs back into pictures: float [-1, 1] NCHW -> uint8 NHWC -> a PNG grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..hostio import atomic_write, to_host


def to_uint8_nhwc(x) -> np.ndarray:
    """float (n, C, H, W) in [-1, 1] -> new uint8 (n, H, W, C) in 0..255.

    Computes round((x + 1) * 127.5), clipped to 0..255, so it inverts the loader's x/127.5 - 1
    exactly. NaN becomes 0.0 (mid grey) so that a diverged sample still renders. Accepts a NumPy
    array or anything with ``.get()`` (a CuPy array is copied to the host).
    """
    x = np.asarray(to_host(x), dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"expected a 4-d NCHW array, got shape {x.shape}")
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    u = np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(u.transpose(0, 2, 3, 1))


def make_grid(images_nchw_float, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Tile n images into one uint8 (H', W', 3) picture, ``nrow`` images per row, ``padding``
    black pixels between and around them. 1-channel images are shown in grey."""
    imgs = to_uint8_nhwc(images_nchw_float)
    n, h, w, c = imgs.shape
    if c == 1:
        imgs = np.repeat(imgs, 3, axis=3)
    elif c != 3:
        raise ValueError(f"expected 1 or 3 channels, got {c}")
    if n == 0 or nrow < 1:
        raise ValueError(f"need at least one image and nrow >= 1 (got {n} images, nrow={nrow})")
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, 3), np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y:y + h, x:x + w] = imgs[i]
    return grid


def save_grid(images_nchw_float, path, nrow: int = 8, padding: int = 2) -> Path:
    """Write n float NCHW images in [-1, 1] as one PNG grid (see :func:`make_grid`) at ``path``.

    The file is written atomically (temporary file + ``os.replace``), so a reader never sees a half
    PNG; the parent folder is created. Returns ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(make_grid(images_nchw_float, nrow, padding), mode="RGB")
    atomic_write(path, lambda f: picture.save(f, format="PNG"))
    return path
