"""RAPPOR's pinned hashing: the Bloom hash of each cohort, and the memoized permanent randomness.

Erlingsson, Pihur, Korolova, CCS 2014 (the mechanism is in `rappor.py`).

Memoization. The paper memoizes B' per (user, value) on the device. Here B' is a pure function
of an explicit secret `prr_seed`, the user id and the value, evaluated by a counter-based hash
(vectorized, nothing stored): the same user reporting the same value again reuses its B', in any
batch and any order; only the IRR draws from the `rng` passed to `encode`. With splitmix64's
finalizer `mix` (S. Vigna's splitmix64.c; Steele, Lea, Flood, OOPSLA 2014) and its increment
γ = 0x9E3779B97F4A7C15, all arithmetic mod 2^64, `^` the bitwise xor:

    s = mix(prr_seed + γ),   key(u) = mix(s ^ mix(u + γ)),   key(u, v) = mix(key(u) ^ mix(v + 2γ))
    cohort(u) = ((mix(key(u) ^ 0xC0) >> 32) · m) >> 32        (m cohorts; uniform up to m / 2^32)
    U_i = mix(key(u, v) + (i + 1) γ) >> 11                     (uniform in [0, 2^53), bit i)

and B'_i = 1 if U_i < round(2^53 f/2), 0 if U_i < round(2^53 f), else B_i. The cohort depends on
the user only, B' on (user, value). A device would keep its own secret; a simulation derives one
`prr_seed` for all users (e.g. `lowcomm.core.derive_seed(seed, purpose="rappor-prr")`).

Bloom hashes (public, pinned: changing them changes every report), seeded per cohort j and hash
t: with P = 2^31 - 1 and x = 2^16 j + t,

    a_{j,t} = 1 + mix(0xB100 + (2x + 1) γ) mod (P - 1),   b_{j,t} = mix(0xB100 + (2x + 2) γ) mod P,
    H_{j,t}(v) = ((a_{j,t} v + b_{j,t}) mod P) mod num_bits       (OLH's Carter-Wegman family).

Two hashes may hit the same bit; that filter then has fewer than h ones, which only lowers the
privacy loss.
"""

from __future__ import annotations

import numpy as np

from lowcomm.analytics.local_hashing import PRIME

U64_MAX = (1 << 64) - 1
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_TWO_GAMMA = np.uint64((2 * 0x9E3779B97F4A7C15) & U64_MAX)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def bloom_hash_seeds(cohorts: int, num_hashes: int) -> np.ndarray:
    """The pinned (a, b) of every cohort and hash, `[cohorts, num_hashes, 2]` uint32."""
    x = (np.arange(cohorts, dtype=np.uint64)[:, None] << np.uint64(16)) \
        + np.arange(num_hashes, dtype=np.uint64)[None, :]  # [c, h]
    a = np.uint64(1) + mix64(np.uint64(0xB100) + (np.uint64(2) * x + np.uint64(1)) * _GAMMA) \
        % np.uint64(PRIME - 1)
    b = mix64(np.uint64(0xB100) + (np.uint64(2) * x + np.uint64(2)) * _GAMMA) % np.uint64(PRIME)
    return np.stack([a, b], axis=-1).astype(np.uint32)


def user_keys(users: np.ndarray, prr_seed: int) -> np.ndarray:
    """key(u) of each user, `[n]` uint64."""
    s = mix64(np.array([(prr_seed + int(_GAMMA)) & U64_MAX], dtype=np.uint64))[0]
    return mix64(s ^ mix64(np.asarray(users, dtype=np.uint64) + _GAMMA))


def cohorts_from_keys(keys: np.ndarray, cohorts: int) -> np.ndarray:
    """cohort(u) from key(u), `[n]` int64 in [0, cohorts)."""
    high = mix64(keys ^ np.uint64(0xC0)) >> np.uint64(32)
    return ((high * np.uint64(cohorts)) >> np.uint64(32)).astype(np.int64)


def prr_uniforms(keys: np.ndarray, values: np.ndarray, num_bits: int) -> np.ndarray:
    """U_i of each user's (key(u), v), `[n, num_bits]` uint64 in [0, 2^53)."""
    value_keys = mix64(keys ^ mix64(np.asarray(values, dtype=np.uint64) + _TWO_GAMMA))  # [n]
    steps = np.arange(1, num_bits + 1, dtype=np.uint64) * _GAMMA  # [m]
    return mix64(value_keys[:, None] + steps[None, :]) >> np.uint64(11)


def check_int(value: object, name: str, low: int, high: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
            or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {value!r}")
    return int(value)


def check_users(users: object, n: int | None, prr_seed: object) -> tuple[np.ndarray, int]:
    """The user ids as `[n]` uint64 (n = None: any length) and the seed, or a ValueError."""
    u = np.asarray(users)
    if u.ndim != 1 or (n is not None and u.shape[0] != n) or u.dtype.kind not in "iu":
        want = "[n]" if n is None else f"[{n}] (one per value)"
        raise ValueError(f"rappor: users must be {want} integer ids; got {u.dtype} {u.shape}")
    if u.size and int(u.min()) < 0:
        raise ValueError(f"rappor: user ids must be >= 0; got {int(u.min())}")
    return u.astype(np.uint64), check_int(prr_seed, "prr_seed", 0, U64_MAX)
