"""`FrequencyOracle`: a local-DP frequency oracle as a frozen container of pure functions.

Each of n users holds a value in the domain [0, k). `encode(values, rng)` perturbs every user's
value at once (vectorized; one call may hold any number of users) and returns their reports as
one `Payload` whose arrays all have the users on axis 0, so that one user's report is what
`single_report` slices out and `serialize` turns into bytes. The server reduces reports to
per-item *support counts* `C_v` with `support_counts(reports) -> [k]`; counts of separate chunks
add, so `aggregate(oracle, chunks)` streams over any number of users in bounded memory.

Every mechanism here is a *pure* protocol (Wang, Blocki, Li, Jha, "Locally Differentially
Private Protocols for Frequency Estimation", USENIX Security 2017): a report from a user holding
v supports v with probability p*, and supports any other item with probability q*. Hence

    f̂_v = (C_v / n - q*) / (p* - q*)                                     (unbiased)
    Var[f̂_v] = q*(1-q*) / (n (p*-q*)^2) + f_v (1-p*-q*) / (n (p*-q*))     (exact for i.i.d. users)

`estimate` returns that unbiased estimate of the *normalised* frequencies (it can be negative or
above one; no clipping). `variance(n, f)` is the closed form above.

What a valid report is lives here too, driven by what each oracle declares: `fields`, one
`ReportField` per array (`<name>/<field>`: its exact dtype, its shape per user, the range
[low, high) of its entries and any further `ReportRule`s, such as SS's strictly increasing
items). `expect_reports` checks a batch against them and raises naming the first bad value;
`layout_problem` and `row_problems` say what is wrong without raising, so that a server reading
reports from the wire (`lowcomm.analytics.wire`) can reject and count them one by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from lowcomm.core import Payload, deserialize, serialize

EncodeFn = Callable[[np.ndarray, np.random.Generator], Payload]
CountFn = Callable[[Payload], np.ndarray]

# Why a report is rejected, in the order the checks run; oracles add the reasons of their rules.
LAYOUT_REASONS = ("wrong_fields", "wrong_dtype", "wrong_shape")
RANGE_REASON = "out_of_range"


@dataclass(frozen=True)
class ReportRule:
    """A condition on one field beyond dtype, shape and range. `holds(arr) -> [n] bool` gets the
    field's `[n, *shape]` array (entries already in range) and says which reports satisfy it;
    `reason` names the rejection of a report that does not; `says` completes "must have <field>
    ..." in messages."""

    reason: str
    says: str
    holds: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ReportField:
    """One array of an oracle's reports, `<oracle>/<name>`: exactly `dtype`, shape `[n, *shape]`
    (n users), every entry in [low, high) (`high=None`: any value of the dtype), and `rules`."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...] = ()
    low: int = 0
    high: int | None = None
    rules: tuple[ReportRule, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    def bounded_below(self) -> bool:
        return self.low > (np.iinfo(self.dtype).min if self.dtype.kind in "iu" else -math.inf)

    def checks_range(self) -> bool:
        return self.high is not None or self.bounded_below()


@dataclass(frozen=True)
class FrequencyOracle:
    """A pure LDP frequency oracle over the domain [0, k).

    `encode(values [n] int, rng) -> Payload` (reports, users on axis 0),
    `support_counts(reports) -> [k] int64`, `estimate(counts, n) -> [k] float64` (unbiased
    normalised frequencies), `variance(n, f) -> [k] float64` (closed form).
    `analytic_bits` is the size of one report as the paper counts it; compare it with the
    measured size from `report_bits`. `g` is the hash range of a local-hashing oracle (None
    for the others)."""

    name: str
    epsilon: float
    k: int
    p_star: float
    q_star: float
    analytic_bits: int
    encode: EncodeFn
    support_counts: CountFn
    g: int | None = None
    fields: tuple[ReportField, ...] = ()

    def estimate(self, counts: np.ndarray, n: int) -> np.ndarray:
        """The unbiased estimate of the normalised frequencies `[k]` from support counts."""
        counts = np.asarray(counts, dtype=np.float64)
        if counts.shape != (self.k,):
            raise ValueError(f"{self.name}: counts must have shape ({self.k},); got {counts.shape}")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{self.name}: n must be a positive integer; got {n!r}")
        return (counts / n - self.q_star) / (self.p_star - self.q_star)

    def variance(self, n: int, f: np.ndarray | float) -> np.ndarray:
        """Var[f̂_v] for n i.i.d. users with true normalised frequencies `f` (Wang et al. 2017,
        variance of a pure protocol). `f` may be a `[k]` vector or a scalar."""
        p, q = self.p_star, self.q_star
        f = np.asarray(f, dtype=np.float64)
        return q * (1 - q) / (n * (p - q) ** 2) + f * (1 - p - q) / (n * (p - q))


@dataclass(frozen=True)
class Tally:
    """Support counts `[k]` of `n` accepted reports: what the server keeps while it streams over
    chunks. `rejected` counts the reports refused by reason (only the wire path,
    `lowcomm.analytics.wire.aggregate_reports`, rejects; in-process chunks are trusted and a
    malformed one raises); none of them is in `counts` or `n`."""

    counts: np.ndarray  # [k] int64
    n: int
    rejected: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kept = {reason: int(c) for reason, c in self.rejected.items() if c}
        object.__setattr__(self, "rejected", MappingProxyType(kept))

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def merged(self, other: Tally) -> Tally:
        if self.counts.shape != other.counts.shape:
            raise ValueError(f"cannot merge tallies of shapes {self.counts.shape} and "
                             f"{other.counts.shape}")
        rejected = dict(self.rejected)
        for reason, count in other.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
        return Tally(self.counts + other.counts, self.n + other.n, rejected)


def aggregate(oracle: FrequencyOracle, chunks: Iterable[Payload]) -> Tally:
    """Support counts over report chunks, one chunk at a time: memory is that of one chunk."""
    counts = np.zeros(oracle.k, dtype=np.int64)
    n = 0
    for chunk in chunks:
        counts += oracle.support_counts(chunk)
        n += num_reports(chunk)
    return Tally(counts, n)


def num_reports(reports: Payload) -> int:
    """The number of users in a report batch (the common length of axis 0 of its arrays)."""
    lengths = {a.shape[0] if a.ndim else -1 for a in reports.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise ValueError(f"reports must hold arrays with the users on axis 0; got {reports!r}")
    return lengths.pop()


def single_report(reports: Payload, index: int) -> Payload:
    """User `index`'s report alone, as the payload that user would send: a batch of one (the
    arrays keep their user axis, of length 1), so the server counts it like any other batch."""
    n = num_reports(reports)
    if not 0 <= index < n:
        raise ValueError(f"report index must be in [0, {n}); got {index}")
    return Payload({name: arr[index : index + 1] for name, arr in reports.items()})


@dataclass(frozen=True)
class ReportBits:
    """The size of one user's report, measured and analytic.

    `wire_bits`: 8 x the length of the serialized payload (header, array descriptors and CRC
    included). `data_bits`: 8 x the bytes of the arrays parsed back from those bytes (the
    report itself, padded to whole bytes and machine integer widths). `analytic_bits`: the
    paper's count. `framing_bits = wire_bits - data_bits`; `padding_bits = data_bits -
    analytic_bits`."""

    analytic_bits: int
    data_bits: int
    wire_bits: int

    @property
    def framing_bits(self) -> int:
        return self.wire_bits - self.data_bits

    @property
    def padding_bits(self) -> int:
        return self.data_bits - self.analytic_bits


def report_bits(oracle: FrequencyOracle, reports: Payload, index: int = 0) -> ReportBits:
    """Measure user `index`'s report: serialize it, parse it back and count the bytes."""
    wire = serialize(single_report(reports, index))
    data_nbytes = sum(arr.nbytes for arr in deserialize(wire).values())
    return ReportBits(oracle.analytic_bits, 8 * data_nbytes, 8 * len(wire))


# Input checks shared by the mechanisms (messages name the value).

_MAX_EPSILON = 700.0  # math.exp overflows float64 just above 709.78


def check_epsilon(epsilon: float) -> float:
    if not isinstance(epsilon, (int, float, np.integer, np.floating)) \
            or isinstance(epsilon, bool) \
            or not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number > 0; got {epsilon!r}")
    if epsilon > _MAX_EPSILON:
        raise ValueError(f"epsilon must be at most {_MAX_EPSILON} (e^epsilon must be a finite "
                         f"float); got {epsilon!r}")
    return float(epsilon)


def check_domain(k: int, *, max_k: int | None = None) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 2:
        raise ValueError(f"domain size k must be an integer >= 2; got {k!r}")
    if max_k is not None and k > max_k:
        raise ValueError(f"domain size k must be at most {max_k}; got {k}")
    return int(k)


def check_values(values: np.ndarray, k: int, name: str) -> np.ndarray:
    """The users' values as a `[n]` int64 array, or a ValueError naming the first bad value."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} encodes a [n] array of values; got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} encodes integer values in [0, {k}); got dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= k))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}: values must be in [0, {k}); got {arr[i]} at index {i} "
                         f"({bad.size} values out of the domain)")
    return arr.astype(np.int64, copy=False)


def check_rng(rng: np.random.Generator, name: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{name} is randomised: pass a numpy Generator (e.g. "
                         f"lowcomm.core.numpy_rng(seed, purpose=...)); got {type(rng).__name__}")
    return rng


def value_dtype(k: int) -> np.dtype:
    """The narrowest unsigned integer type that holds every value of [0, k)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if k - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def layout_problem(reports: Payload, name: str, fields: tuple[ReportField, ...], *,
                   users: int | None = None) -> tuple[str, str] | None:
    """(reason, message) if the arrays of `reports` are not exactly the declared fields with their
    dtypes and per-user shapes (and `users` reports, if given); None if the layout is right."""
    if not isinstance(reports, Payload):
        raise ValueError(f"{name}: reports must be a Payload; got {type(reports).__name__}")
    names = [f"{name}/{f.name}" for f in fields]
    missing = [n for n in names if n not in reports]
    if missing:
        return ("wrong_fields", f"not {name} reports: missing arrays {missing}; they hold "
                                f"{sorted(reports)}")
    extra = sorted(set(reports) - set(names))
    if extra:
        return "wrong_fields", f"{name} reports hold unexpected arrays {extra}"
    for f, array_name in zip(fields, names, strict=True):
        arr = reports[array_name]
        if arr.dtype != f.dtype or arr.shape[1:] != f.shape or arr.ndim != 1 + len(f.shape):
            reason = "wrong_dtype" if arr.dtype != f.dtype else "wrong_shape"
            declared = ", ".join(["n", *map(str, f.shape)])
            return (reason, f"{name} reports must have {f.name} as {f.dtype} [{declared}]; got "
                            f"{arr.dtype} {list(arr.shape)}")
    lengths = {reports[n].shape[0] for n in names}
    if len(lengths) > 1:
        return "wrong_shape", f"{name} reports must hold arrays with the users on axis 0; got " \
                              f"{reports!r}"
    if users is not None and lengths != {users}:
        return "wrong_shape", f"{name}: expected {users} report(s); got {lengths.pop()}"
    return None


def _row_checks(fields: tuple[ReportField, ...]):
    """(reason, field, rule or None for the range) in the order reports are checked."""
    for f in fields:
        if f.checks_range():
            yield RANGE_REASON, f, None
    for f in fields:
        for rule in f.rules:
            yield rule.reason, f, rule


def _failing(arr: np.ndarray, f: ReportField, rule: ReportRule | None) -> np.ndarray:
    """[n] bool: the reports (rows of `arr`) that fail one check."""
    if rule is not None:
        return ~np.asarray(rule.holds(arr), dtype=bool)
    bad = np.zeros(arr.shape, dtype=bool)
    if f.bounded_below():
        bad |= arr < f.low
    if f.high is not None:
        bad |= arr >= f.high
    return bad.reshape(arr.shape[0], -1).any(axis=1)


def row_problems(reports: Payload, name: str, fields: tuple[ReportField, ...]) -> np.ndarray:
    """[n] int8 for reports of the right layout: 0 where a report is valid, else 1 + the index of
    the first check it fails in `_row_checks` order (ranges first, then the rules), so every bad
    report is counted once, under its first fault."""
    n = reports[f"{name}/{fields[0].name}"].shape[0] if fields else 0
    codes = np.zeros(n, dtype=np.int8)
    for code, (_, f, rule) in enumerate(_row_checks(fields), start=1):
        unset = codes == 0
        if not unset.any():
            break
        arr = reports[f"{name}/{f.name}"]
        codes[unset] = np.where(_failing(arr[unset], f, rule), code, 0)
    return codes


def row_reason(fields: tuple[ReportField, ...], code: int) -> str:
    """The rejection reason of a nonzero code of `row_problems`."""
    return list(_row_checks(fields))[code - 1][0]


def expect_reports(reports: Payload, name: str, fields: tuple[ReportField, ...]
                   ) -> list[np.ndarray]:
    """The arrays `name/field` of a report batch that is valid for the declared fields, or a
    ValueError naming the first problem (and the first bad value)."""
    problem = layout_problem(reports, name, fields)
    if problem is not None:
        raise ValueError(problem[1])
    codes = row_problems(reports, name, fields)
    bad = np.flatnonzero(codes)
    if bad.size:
        i = int(bad[0])
        _, f, rule = list(_row_checks(fields))[codes[i] - 1]
        row = reports[f"{name}/{f.name}"][i]
        if rule is None:
            flat = np.atleast_1d(row).ravel()
            value = flat[int(np.flatnonzero(_failing(flat[:, None], f, None))[0])]
            high = f.high if f.high is not None else (
                np.iinfo(f.dtype).max + 1 if f.dtype.kind in "iu" else "inf")
            raise ValueError(f"{name} reports must have {f.name} in [{f.low}, {high}); got "
                             f"{value} (report {i}; {bad.size} bad reports)")
        raise ValueError(f"{name} reports must have {f.name} {rule.says}; report {i} has "
                         f"{np.asarray(row).tolist()} ({bad.size} bad reports)")
    return [reports[f"{name}/{f.name}"] for f in fields]


def ceil_log2(x: int) -> int:
    """ceil(log2 x) for an integer x >= 1, exactly (no floating point)."""
    return (int(x) - 1).bit_length()
