"""Philox4x32-10 counter-based random numbers (NumPy reference of kernels/rng.cu).

Element i of a draw with state (seed, offset) is Philox4x32-10 of counter
(i mod 2³², i div 2³², offset mod 2³², offset div 2³²) under key (seed mod 2³², seed div 2³²).
Integer arithmetic is exact, so the CUDA kernel and this function agree bit for bit on the raw
32-bit words; uniform floats are exact too, normals agree to float32 rounding of log/cos.

Source: Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11); the
constants are those of Random123 and cuRAND's Philox4_32_10.
"""
import numpy as np

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
_MASK = 0xFFFFFFFF


def philox_rounds(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of counter words c0..c3 (uint64 arrays holding 32-bit values) under key
    (k0, k1) (Python ints). Returns the 4 output words as uint64 arrays."""
    m0, m1, mask = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1), np.uint64(_MASK)
    for _ in range(10):
        p0 = m0 * c0
        p1 = m1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & mask
        hi1, lo1 = p1 >> np.uint64(32), p1 & mask
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0 = (k0 + PHILOX_W0) & _MASK
        k1 = (k1 + PHILOX_W1) & _MASK
    return c0, c1, c2, c3


def philox4x32_10(n, seed, offset):
    """The 4 raw uint32 words for elements 0..n−1: array (4, n) of uint32."""
    i = np.arange(n, dtype=np.uint64)
    words = philox_rounds(i & np.uint64(_MASK), i >> np.uint64(32),
                          np.full(n, offset & _MASK, dtype=np.uint64),
                          np.full(n, (offset >> 32) & _MASK, dtype=np.uint64),
                          seed & _MASK, (seed >> 32) & _MASK)
    return np.stack(words).astype(np.uint32)


def _unit(word, plus_one=False):
    """24 high bits of a uint32 word -> float32 in [0, 1) (or (0, 1] with plus_one)."""
    k = (word >> np.uint32(8)).astype(np.float32)
    if plus_one:
        k += np.float32(1)
    return k * np.float32(2.0 ** -24)


def philox_uniform(n, seed, offset, low, high, dtype):
    """n values of U[low, high): low + (high − low)·u with u = (word₀ >> 8)·2⁻²⁴ (float32 math)."""
    u = _unit(philox4x32_10(n, seed, offset)[0])
    lo, hi = np.float32(low), np.float32(high)
    return (lo + (hi - lo) * u).astype(dtype)


def philox_normal(n, seed, offset, mean, std, dtype):
    """n values of N(mean, std²) by Box–Muller: √(−2 ln u₁)·cos(2π u₂), u₁ ∈ (0, 1], u₂ ∈ [0, 1)."""
    words = philox4x32_10(n, seed, offset)
    u1 = _unit(words[0], plus_one=True)
    u2 = _unit(words[1])
    z = np.sqrt(np.float32(-2) * np.log(u1)) * np.cos(np.float32(2 * np.pi) * u2)
    return (np.float32(mean) + np.float32(std) * z).astype(dtype)


def philox_uniform_next(n, seed, offset, low, high, dtype):
    """:func:`philox_uniform` at the position ``offset[0]`` (a (1,) uint64 array, the device-side
    state of the CUDA backend), which then advances by n."""
    out = philox_uniform(n, seed, int(offset[0]), low, high, dtype)
    offset[0] += np.uint64(n)
    return out


def philox_normal_next(n, seed, offset, mean, std, dtype):
    """:func:`philox_normal` at the position ``offset[0]``, which then advances by n."""
    out = philox_normal(n, seed, int(offset[0]), mean, std, dtype)
    offset[0] += np.uint64(n)
    return out
