"""Sample-quality metrics on feature vectors: KID and FID, in NumPy float64.

Both compare two sets of image features, ``real`` (n_r, d) and ``fake`` (n_f, d) — in
:mod:`rawgan.eval` the 2048-d pool3 activations of TF-Inception-v3 (:mod:`rawgan.inception`).
Pure NumPy; nothing here needs torch.

KID (Kernel Inception Distance; Bińkowski, Sutherland, Arbel & Gretton, "Demystifying MMD GANs",
ICLR 2018, eq. 3 and section 5): the unbiased estimator of the squared maximum mean discrepancy
with the cubic polynomial kernel ``k(x, y) = (x·y / d + 1)^3``::

    MMD²_u = 1/(m(m-1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m-1)) Σ_{i≠j} k(y_i, y_j)
             − 2/m² Σ_{i,j} k(x_i, y_j)

averaged over ``subsets`` random subsets of ``m = subset_size`` vectors from each side (drawn
without replacement within a subset), reported as mean and standard deviation over the subsets
(torch-fidelity's and the paper's defaults: 100 subsets of 1000). Unbiased: its expectation is 0
when both sets come from one distribution (single values may then be negative), so small sample
sizes do not inflate it — the right metric for the few thousand images a CPU can afford.

FID (Fréchet Inception Distance; Heusel et al., "GANs Trained by a Two Time-Scale Update Rule",
NeurIPS 2017): the Fréchet distance between Gaussians fitted to the two sets::

    FID = |μ_r − μ_f|² + tr(Σ_r) + tr(Σ_f) − 2 tr((Σ_r Σ_f)^{1/2})

with the unbiased (n−1) covariances. It is *biased*: for a finite sample its expectation exceeds
the population value by a term that shrinks roughly like 1/n (Bińkowski et al., section 4;
Chong & Forsyth, "Effectively Unbiased FID", CVPR 2020), so FIDs are comparable only at equal
sample counts, and the literature's 50k-sample values are not comparable to a few thousand.
``tr((Σ_r Σ_f)^{1/2})`` is computed as Σ sqrt(λ_i) over the eigenvalues λ_i of the symmetric PSD
matrix ``Σ_r^{1/2} Σ_f Σ_r^{1/2}`` (same eigenvalues as Σ_r Σ_f), so no complex square root (and
no SciPy) is needed; tiny negative eigenvalues from rounding are clipped to 0.
"""
from __future__ import annotations

import numpy as np

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def _features(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"{name} features must be a 2-D array (n, d) with n >= 2, got shape "
                         f"{a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} features hold NaN/Inf")
    return a


def _pair(real, fake):
    real, fake = _features(real, "real"), _features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs "
                         f"{fake.shape[1]}")
    return real, fake


def polynomial_mmd2_unbiased(x, y) -> float:
    """Unbiased MMD² between the rows of ``x`` (m, d) and ``y`` (m', d) with the cubic kernel
    ``(x·y/d + 1)^3`` (float64). Both need at least 2 rows. Raises ValueError for bad shapes."""
    x, y = _pair(x, y)
    d = x.shape[1]
    m, n = x.shape[0], y.shape[0]
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float(sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * k_xy.sum() / (m * n))


def kid(real, fake, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> dict:
    """KID between feature sets ``real`` (n_r, d) and ``fake`` (n_f, d) (any float dtype).

    Each of ``subsets`` subsets takes ``m = min(subset_size, n_r, n_f)`` rows from each side
    (``np.random.default_rng(seed)``, without replacement within a subset) and computes
    :func:`polynomial_mmd2_unbiased`. Returns ``{"mean", "std", "subsets", "subset_size"}``
    (std over subsets, ddof=0 as torch-fidelity; 0.0 for one subset). Unitless; the usual report
    is mean × 1000 ± std × 1000.

    Raises ValueError: fewer than 2 rows on a side, different feature dimensions, NaN/Inf, or
    ``subsets``/``subset_size`` < 1 (resp. < 2).
    """
    real, fake = _pair(real, fake)
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if subset_size < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    m = min(subset_size, real.shape[0], fake.shape[0])
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, dtype=np.float64)
    for s in range(subsets):
        r = real[rng.choice(real.shape[0], m, replace=False)]
        f = fake[rng.choice(fake.shape[0], m, replace=False)]
        values[s] = polynomial_mmd2_unbiased(r, f)
    return {"mean": float(values.mean()), "std": float(values.std()), "subsets": int(subsets),
            "subset_size": int(m)}


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of ``features`` (n, d), float64; n >= 2."""
    f = _features(features, "the")
    return f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (see the module docstring),
    float64. Raises ValueError for mismatched shapes."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"frechet_distance: shapes {mu1.shape}, {s1.shape}, {mu2.shape}, "
                         f"{s2.shape} do not fit (d,), (d, d)")
    root1 = _sqrt_psd(s1)
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(value, 0.0)


def fid(real, fake) -> float:
    """FID between feature sets ``real`` (n_r, d) and ``fake`` (n_f, d); biased, see the module
    docstring. Raises ValueError as :func:`kid`."""
    real, fake = _pair(real, fake)
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
