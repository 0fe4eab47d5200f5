"""PGR (Projective Geometry Response): each user reports one point of a finite projective space.

V. Feldman, J. Nelson, H. Nguyen, K. Talwar, "Private Frequency Estimation via Projective
Geometry", ICML 2022 (arXiv 2203.00194). Parameters as in the authors' code
(minilek/private_frequency_oracles, `oracles/projective_geometry.cc`), read for facts only.

Notation map (paper -> code): ε -> `epsilon`; the field size q (a prime) -> `field_size`; the
dimension t of F_q^t -> `dimension`; the number of projective points K = (q^t - 1)/(q - 1) ->
`points`; an item v -> the v-th projective point (module `point_coordinates`); the set
S_v = {u : <u, v> = 0 mod q} (a hyperplane, `cset` = (q^(t-1) - 1)/(q - 1) points); two distinct
hyperplanes share `cint` = (q^(t-2) - 1)/(q - 1) points; the reported point u -> `pgr/value`;
s, r of the paper -> `p_star`, `q_star`.

Points. A projective point is a nonzero vector of F_q^t up to scaling, written canonically with
its first nonzero coordinate equal to 1. Points are numbered by the position i of that leading 1
(all points with i = 0 first) and then by the base-q value of the t - 1 - i coordinates after it:
point index = sum_{i' < i} q^(t-1-i') + value. Items are the points 0..k-1.

Domain padding. PGR needs K >= k points, and K is rarely k: the domain is padded to the K
points of PG(t-1, q), and the K - k points from k on belong to nobody. They are still outputs
(the hyperplane of an item runs through them), so a report is a point of [0, K), sent in
ceil(log2 K) bits, and the server estimates only the k real items. k = 1024, ε = 1: q = 5,
t = 6, K = 3906 (12 bits).

Mechanism. A user holding v outputs u with probability proportional to e^ε if u ∈ S_v and to 1
otherwise, normaliser Z = (e^ε - 1) cset + K. Sampled in two steps: with probability
e^ε cset / Z a uniform point of S_v, else a uniform point off it. A uniform nonzero vector w of
the hyperplane is drawn by drawing all coordinates but v's leading one uniformly and solving
<w, v> = 0 for that one (redrawing the rare w = 0); off the hyperplane, <w, v> = c for c uniform
in [1, q). Every point has q - 1 representatives on the same side, so canonicalising w gives a
uniform point. All users at once, no per-user loop.

Support: a report u supports x when u ∈ S_x. PGR is pure (Feldman et al.): p* = s =
e^ε cset / Z, q* = r = ((e^ε - 1) cint + cset) / Z; the estimator and variance are those of
`oracle.py`. q is the smallest odd prime >= ceil(e^ε + 1) (the authors' code), t the smallest
t >= 2 with K >= k. n·Var (f = 0) at k = 1024, ε = 1: 3.819 (SS: 3.674).

Server. support_counts histograms the reports over [0, K) and, for the points that occur,
counts <u, x> = 0 mod q for every item in blocks: O(k · min(n, K) · t) time; the paper's
O(n + k q t) dynamic program is not implemented. Bits: ceil(log2 K) analytic; the payload stores
u in the narrowest unsigned integer, so the data bits equal the analytic bits when K is just
below 2^8, 2^16 or 2^32 (e.g. k <= 156 at ε = 1: q = 5, t = 4, K = 156, 8 bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lowcomm.analytics.oracle import (
    FrequencyOracle,
    ReportField,
    ceil_log2,
    check_domain,
    check_epsilon,
    check_rng,
    check_values,
    expect_reports,
    value_dtype,
)
from lowcomm.core import Payload

MAX_POINTS = 1 << 32  # reports are stored as uint32 at most
_BLOCK_PAIRS = 1 << 22  # items x output points per block of the server's count


@dataclass(frozen=True)
class ProjectiveOracle(FrequencyOracle):
    """PGR's oracle: a pure `FrequencyOracle` that also names its geometry PG(t-1, q)."""

    field_size: int = 3  # q
    dimension: int = 2  # t
    points: int = 4  # K = (q^t - 1) / (q - 1) >= k


def is_prime(x: int) -> bool:
    """Trial division (field sizes are small)."""
    return x >= 2 and all(x % d for d in range(2, math.isqrt(x) + 1))


def default_field_size(epsilon: float) -> int:
    """The smallest odd prime >= ceil(e^ε + 1)."""
    q = max(3, math.ceil(math.exp(check_epsilon(epsilon)) + 1))
    while not is_prime(q):
        q += 1
    return q


def geometry(k: int, q: int) -> tuple[int, int, int, int]:
    """(t, K, cset, cint): the smallest t >= 2 with K = (q^t - 1)/(q - 1) >= k, and the sizes
    of a hyperplane and of the meet of two hyperplanes of PG(t-1, q)."""
    t = 2
    while (q**t - 1) // (q - 1) < k:
        t += 1
    return t, (q**t - 1) // (q - 1), (q ** (t - 1) - 1) // (q - 1), (q ** (t - 2) - 1) // (q - 1)


def point_coordinates(index: np.ndarray, q: int, t: int) -> np.ndarray:
    """Canonical coordinates `[..., t]` (int64) of projective points given by index."""
    index = np.asarray(index, dtype=np.int64)
    sizes = q ** np.arange(t - 1, -1, -1, dtype=np.int64)  # [t] points with the leading 1 at i
    offsets = np.concatenate(([0], np.cumsum(sizes)))  # [t + 1]
    lead = np.searchsorted(offsets, index, side="right") - 1  # [...]
    value = index - offsets[lead]
    out = np.zeros((*index.shape, t), dtype=np.int64)
    for i in range(t - 1, -1, -1):  # coordinates after the leading 1, least significant last
        after = i > lead
        out[..., i] = np.where(after, value % q, out[..., i])
        value = np.where(after, value // q, value)
    np.put_along_axis(out, lead[..., None], 1, axis=-1)
    return out


def point_index(vectors: np.ndarray, q: int) -> np.ndarray:
    """The index of the projective point of each nonzero vector `[n, t]` over F_q."""
    vectors = np.asarray(vectors, dtype=np.int64) % q
    t = vectors.shape[-1]
    nonzero = vectors != 0
    if not nonzero.any(axis=-1).all():
        raise ValueError("the zero vector is not a projective point")
    lead = np.argmax(nonzero, axis=-1)  # [n]
    inverse = np.array([0] + [pow(a, q - 2, q) for a in range(1, q)], dtype=np.int64)
    scale = inverse[np.take_along_axis(vectors, lead[:, None], axis=-1)]  # [n, 1]
    canonical = vectors * scale % q
    place = q ** np.arange(t - 1, -1, -1, dtype=np.int64)  # [t] q^(t-1-i)
    offsets = np.concatenate(([0], np.cumsum(place)))  # place[i] points lead at i
    after = np.arange(t)[None, :] > lead[:, None]  # [n, t]
    return offsets[lead] + (np.where(after, canonical, 0) * place).sum(axis=-1)


def pgr(epsilon: float, k: int, *, field_size: int | None = None) -> ProjectiveOracle:
    """Projective Geometry Response over [0, k) at privacy level `epsilon`; `field_size` is the
    prime q (default `default_field_size(epsilon)`)."""
    epsilon = check_epsilon(epsilon)
    k = check_domain(k, max_k=1 << 24)
    if field_size is None:
        q = default_field_size(epsilon)
    elif (not isinstance(field_size, (int, np.integer)) or isinstance(field_size, bool)
          or not is_prime(int(field_size))):
        raise ValueError(f"pgr: field_size must be a prime (the field F_q); got {field_size!r}")
    else:
        q = int(field_size)
    t, points, cset, cint = geometry(k, q)
    if points > MAX_POINTS:
        raise ValueError(f"pgr: K = {points} projective points (q = {q}, t = {t}) exceed "
                         f"{MAX_POINTS}; use a smaller field_size")
    e = math.exp(epsilon)
    z = math.expm1(epsilon) * cset + points
    inside = e * cset / z  # p* = s: Pr[u in S_v]
    q_star = (math.expm1(epsilon) * cint + cset) / z
    items = point_coordinates(np.arange(k), q, t)  # [k, t]
    leads = np.argmax(items != 0, axis=1)[:, None]  # [k, 1] position of each item's leading 1
    dtype = value_dtype(points)
    fields = (ReportField("value", dtype, high=points),)

    def encode(values: np.ndarray, rng: np.random.Generator) -> Payload:
        v = check_values(values, k, "pgr")
        rng = check_rng(rng, "pgr")
        n = v.shape[0]
        coords, lead = items[v], leads[v]  # [n, t], [n, 1]: v's leading 1 is at `lead`
        target = np.where(rng.random(n) < inside, 0, rng.integers(1, q, size=n))  # <w, v>
        w = rng.integers(0, q, size=(n, t))  # [n, t]
        redraw = np.arange(n)
        while redraw.size:  # solve <w, v> = target for w[lead]; redraw w = 0 (prob q^(1-t))
            sub, at = w[redraw], lead[redraw]  # copies [r, t], [r, 1]
            np.put_along_axis(sub, at, 0, axis=1)  # v's leading entry is 1: solve for it
            rest = (coords[redraw] * sub).sum(axis=1)
            np.put_along_axis(sub, at, ((target[redraw] - rest) % q)[:, None], axis=1)
            w[redraw] = sub
            zero = redraw[~w[redraw].any(axis=1)]
            w[zero] = rng.integers(0, q, size=(zero.size, t))
            redraw = zero
        return Payload({"pgr/value": point_index(w, q).astype(dtype)})

    def support_counts(reports: Payload) -> np.ndarray:
        (u,) = expect_reports(reports, "pgr", fields)
        seen, histogram = np.unique(u.astype(np.int64), return_counts=True)
        outputs = point_coordinates(seen, q, t)  # [m, t]
        counts = np.zeros(k, dtype=np.int64)
        rows = max(1, _BLOCK_PAIRS // max(1, seen.size))
        for start in range(0, k, rows):
            on_plane = (items[start : start + rows] @ outputs.T) % q == 0  # [rows, m]
            counts[start : start + rows] = on_plane.astype(np.int64) @ histogram
        return counts

    return ProjectiveOracle("pgr", epsilon, k, inside, q_star, ceil_log2(points), encode,
                            support_counts, fields=fields, field_size=q, dimension=t,
                            points=points)

