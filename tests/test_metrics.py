"""rawgan.metrics: KID (unbiased cubic-kernel MMD²) and FID against direct float64 computations."""
import numpy as np
import pytest

from rawgan import metrics


def direct_mmd2(x, y):
    """The unbiased estimator written as plain loops over pairs (Bińkowski et al. 2018, eq. 3)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def direct_fid(a, b):
    """FID from the textbook formula, with tr((S1 S2)^1/2) from the (non-symmetric) eigenvalues
    of S1 S2 — a different route than metrics.frechet_distance's symmetric one."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1 = (a - mu1).T @ (a - mu1) / (len(a) - 1)
    s2 = (b - mu2).T @ (b - mu2) / (len(b) - 1)
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def test_mmd2_matches_direct_loops():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5)).astype(np.float32)
    y = rng.normal(0.5, 1.5, size=(9, 5))
    ours = metrics.polynomial_mmd2_unbiased(x, y)
    assert ours == pytest.approx(direct_mmd2(x, y), rel=1e-10, abs=1e-12)
    assert ours > 0


def test_kid_with_one_full_subset_is_the_mmd_of_the_sets():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 6)), rng.normal(0.3, 1.0, size=(12, 6))
    k = metrics.kid(x, y, subsets=1, subset_size=1000)
    assert k["subset_size"] == 12 and k["subsets"] == 1 and k["std"] == 0.0
    assert k["mean"] == pytest.approx(direct_mmd2(x, y), rel=1e-10)


def test_kid_subsets_are_drawn_from_the_seed_and_average_direct_values():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(25, 4))
    k = metrics.kid(x, y, subsets=5, subset_size=10, seed=3)
    draw = np.random.default_rng(3)
    values = []
    for _ in range(5):
        xi = x[draw.choice(30, 10, replace=False)]
        yi = y[draw.choice(25, 10, replace=False)]
        values.append(direct_mmd2(xi, yi))
    assert k["mean"] == pytest.approx(np.mean(values), rel=1e-10)
    assert k["std"] == pytest.approx(np.std(values), rel=1e-8)
    assert k == metrics.kid(x, y, subsets=5, subset_size=10, seed=3)      # reproducible


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    rng = np.random.default_rng(4)
    d = 16
    a, b = rng.normal(size=(600, d)), rng.normal(size=(600, d))
    shifted = rng.normal(0.5, 1.0, size=(600, d))
    same = metrics.kid(a, b, subsets=20, subset_size=300)
    diff = metrics.kid(a, shifted, subsets=20, subset_size=300)
    # Unbiased: same-distribution values scatter around 0 (either sign) at the noise level.
    assert abs(same["mean"]) < 0.02
    assert diff["mean"] > 0.2 and diff["mean"] > 10 * abs(same["mean"])
    assert diff["mean"] > 5 * diff["std"]


def test_fid_matches_direct_computation():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(50, 6))
    b = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6)) + 0.7
    assert metrics.fid(a, b) == pytest.approx(direct_fid(a, b), rel=1e-8)
    assert metrics.fid(a, b) == pytest.approx(metrics.fid(b, a), rel=1e-8)   # symmetric


def test_fid_of_diagonal_gaussians_has_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expect = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    got = metrics.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expect, rel=1e-12)                        # 5 + 1 + 1 + 4 = 11
    assert expect == 11.0


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(200, 32))
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-8)
    # A pure mean shift of 0.5 in every one of the 32 dimensions adds exactly 32 * 0.25.
    assert metrics.fid(a, a + 0.5) == pytest.approx(8.0, rel=1e-8)


def test_fid_is_biased_at_small_n():
    """Why the CLI says "compare only at equal n": two samples of N(0, I) score well above 0,
    and less so with more samples."""
    rng = np.random.default_rng(7)
    small = metrics.fid(rng.normal(size=(100, 20)), rng.normal(size=(100, 20)))
    large = metrics.fid(rng.normal(size=(2000, 20)), rng.normal(size=(2000, 20)))
    assert small > 1.0 and large < small / 5


@pytest.mark.parametrize("real, fake, msg", [
    (np.zeros((1, 4)), np.zeros((5, 4)), "n >= 2"),
    (np.zeros((5, 4)), np.zeros(5), "2-D"),
    (np.zeros((5, 4)), np.zeros((5, 3)), "dimension"),
    (np.full((5, 4), np.nan), np.zeros((5, 4)), "NaN"),
])
def test_bad_features_raise_a_clear_valueerror(real, fake, msg):
    with pytest.raises(ValueError, match=msg):
        metrics.kid(real, fake)
    with pytest.raises(ValueError, match=msg):
        metrics.fid(real, fake)


def test_bad_subset_settings():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="subsets"):
        metrics.kid(x, x, subsets=0)
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kid(x, x, subset_size=1)
