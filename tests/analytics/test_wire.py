"""Reports read from the wire: every malformed report is rejected on its own and counted by
reason, and the accepted ones give exactly the counts of the clean subset, for every oracle."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import lowcomm.analytics as analytics
from lowcomm.analytics import (
    FrequencyOracle,
    aggregate,
    aggregate_reports,
    encode_chunks,
    rappor,
    single_report,
    user_reports,
)
from lowcomm.analytics.wire import checked_batches, report_nbytes
from lowcomm.core import Payload, derive_seed, numpy_rng, serialize
from lowcomm.data import zipf_items


def _factories() -> list:
    """Every exported oracle factory that takes (epsilon, k): new oracles are covered unasked."""
    found = []
    for name in analytics.__all__:
        obj = getattr(analytics, name)
        if not inspect.isfunction(obj):
            continue
        required = [p.name for p in inspect.signature(obj).parameters.values()
                    if p.default is inspect.Parameter.empty]
        if required == ["epsilon", "k"] and isinstance(obj(1.0, 16), FrequencyOracle):
            found.append(obj)
    return found


FACTORIES = _factories()
K = 100  # not a multiple of 8: the unary oracles have padding bits to check


def test_the_known_oracles_are_all_found():
    names = {f.__name__ for f in FACTORIES}
    assert {"grr", "oue", "sue", "olh", "blh", "hm", "hr", "ss", "pgr", "mss"} <= names


def _encoded(oracle: FrequencyOracle, n: int, seed: int = 0) -> Payload:
    values = numpy_rng(seed, purpose="analytics-test-wire-values").integers(0, oracle.k, size=n)
    return oracle.encode(values, numpy_rng(seed, purpose="analytics-test-wire"))


def _with(report: Payload, name: str, array: np.ndarray) -> bytes:
    """One user's report with array `name` replaced (or added), serialized."""
    return serialize(Payload({**report, name: array}))


def _malformed(oracle: FrequencyOracle, report: Payload) -> list[tuple[str, bytes]]:
    """(expected reason, bytes) for bad reports built from one valid report."""
    good = serialize(report)
    first = f"{oracle.name}/{oracle.fields[0].name}"
    arr = report[first]
    corrupted = bytearray(good)
    corrupted[len(good) // 2] ^= 0xFF
    renamed = {(f"{oracle.name}/bogus" if m == first else m): a for m, a in report.items()}
    other_dtype = np.float32 if arr.dtype.kind in "iu" else np.int64
    longer = np.concatenate([arr, arr[:, -1:]], axis=1) if arr.ndim > 1 else arr.reshape(1, 1)
    bad = [
        ("malformed_bytes", good[:-3]),  # truncated
        ("malformed_bytes", good[: len(good) // 2]),
        ("malformed_bytes", bytes(corrupted)),  # fails the CRC
        ("malformed_bytes", b""),
        ("wrong_fields", serialize(Payload(renamed))),
        ("wrong_fields", _with(report, f"{oracle.name}/extra", np.zeros(1, np.uint8))),
        ("wrong_fields", serialize(Payload({m: a for m, a in report.items() if m != first}))
         if len(report) > 1 else serialize(Payload({"grr-like/value": arr}))),
        ("wrong_dtype", _with(report, first, arr.astype(other_dtype))),
        ("wrong_shape", _with(report, first, longer)),  # wrong length per user
        ("wrong_shape", serialize(Payload({m: np.concatenate([a, a]) for m, a in
                                           report.items()}))),  # two users in one report
    ]
    for f in oracle.fields:  # one out-of-range entry per bounded field, at each bound
        name = f"{oracle.name}/{f.name}"
        if f.high is not None:
            too_big = report[name].copy()
            too_big.flat[-1] = f.high
            bad.append(("out_of_range", _with(report, name, too_big)))
        if f.bounded_below():
            too_small = report[name].copy()
            too_small.flat[0] = f.low - 1
            bad.append(("out_of_range", _with(report, name, too_small)))
    return bad


# Out-of-range reports written from each paper's definition (not from the declarations), so a
# declaration that is too loose fails here: (field, replacement for user 0's array, reason).
def _independent_cases(oracle: FrequencyOracle):
    k = oracle.k
    if oracle.name == "grr":
        yield "value", np.array([k], np.uint8), "out_of_range"
    if oracle.name in ("oue", "sue"):  # bit k of the packed row (k = 100: bit 4 of byte 12)
        row = np.zeros((1, 13), np.uint8)
        row[0, 12] = 1 << 4
        yield "bits", row, "padding_bits"
    if oracle.name in ("olh", "blh"):
        yield "y", np.array([oracle.g], np.uint8), "out_of_range"
        yield "a", np.array([0], np.uint32), "out_of_range"
        yield "b", np.array([2**31 - 1], np.uint32), "out_of_range"
    if oracle.name == "hm":
        yield "index", np.array([128], np.uint8), "out_of_range"  # K = 128 columns at k = 100
        yield "bit", np.array([2], np.uint8), "out_of_range"
    if oracle.name == "hr":
        yield "value", np.array([oracle.blocks * oracle.block_size], np.uint8), "out_of_range"
    if oracle.name == "ss":
        omega = oracle.fields[0].shape[0]
        yield "items", np.arange(k - omega + 1, k + 1, dtype=np.uint8)[None], "out_of_range"
        yield "items", np.r_[1, 0, 2:omega].astype(np.uint8)[None], "unsorted_items"
        yield "items", np.r_[0, 0, 2:omega].astype(np.uint8)[None], "unsorted_items"
    if oracle.name == "pgr":  # k = 100 at ε = 1: K = 156 projective points
        yield "value", np.array([oracle.points], np.uint8), "out_of_range"
    if oracle.name == "mss":  # a row [j, ω_j increasing residues < m_j, sentinel m_max ...]
        top, (m, w) = max(oracle.moduli), (oracle.moduli[0], oracle.subset_sizes[0])
        row = np.full((1, 1 + max(oracle.subset_sizes)), top, np.uint8)
        row[0, : 1 + w] = np.r_[0, np.arange(w)]  # a valid block-0 row
        yield "report", np.r_[len(oracle.moduli), row[0, 1:]].astype(np.uint8)[None], "bad_block"
        shifted = row.copy()
        shifted[0, w] = m  # the largest residue of block 0 one past m_0
        yield "report", shifted, "bad_residues"
        swapped = row.copy()
        swapped[0, 1:3] = (1, 0)
        yield "report", swapped, "bad_residues"
        if w < row.shape[1] - 1:
            yield "report", np.r_[0, row[0, 1:-1], 0].astype(np.uint8)[None], "bad_residues"


def _mixed_stream(oracle, reports: Payload) -> tuple[list[bytes], dict[str, int]]:
    """Every user's bytes with the bad reports of `_malformed` and `_independent_cases` inserted
    at random places, and how many bad reports each reason should count."""
    stream = list(user_reports(reports))
    bad = _malformed(oracle, single_report(reports, 0))
    bad += [(reason, _with(single_report(reports, 0), f"{oracle.name}/{field}", array))
            for field, array, reason in _independent_cases(oracle)]
    positions = numpy_rng(1, purpose="analytics-test-wire-mix").choice(
        len(stream) + len(bad), len(bad), replace=False)
    for position, (_, data) in sorted(zip(positions, bad, strict=True)):
        stream.insert(int(position), data)
    expected: dict[str, int] = {}
    for reason, _ in bad:
        expected[reason] = expected.get(reason, 0) + 1
    return stream, expected


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_a_stream_with_malformed_reports_counts_exactly_the_clean_subset(factory):
    oracle = factory(1.0, K)
    n = 70
    reports = _encoded(oracle, n)
    stream, expected = _mixed_stream(oracle, reports)
    tally = aggregate_reports(oracle, iter(stream), batch_size=16)
    assert tally.n == n
    np.testing.assert_array_equal(tally.counts, oracle.support_counts(reports))
    assert dict(tally.rejected) == expected
    assert tally.n_rejected == sum(expected.values())


def test_rappor_reads_the_wire_through_the_same_checks():
    """RAPPOR is not a FrequencyOracle (its counts are per cohort and bit), but its reports
    are checked by the same declared fields: its own aggregate runs on the checked batches."""
    oracle = rappor(2.0, K, num_bits=12, cohorts=5)  # 12 bits: 4 padding bits in 2 bytes
    n = 70
    values = numpy_rng(0, purpose="analytics-test-wire-values").integers(0, K, size=n)
    reports = oracle.encode(values, numpy_rng(0, purpose="analytics-test-wire"),
                            users=np.arange(n), prr_seed=derive_seed(0, purpose="test-prr"))
    stream, expected = _mixed_stream(oracle, reports)
    row = np.zeros((1, 2), np.uint8)
    row[0, 1] = 1 << 4  # bit 12 of a 12-bit filter: padding
    stream += [_with(single_report(reports, 1), "rappor/bits", row),
               _with(single_report(reports, 1), "rappor/cohort", np.array([5], np.uint8))]
    expected["padding_bits"] = expected.get("padding_bits", 0) + 1
    expected["out_of_range"] += 1
    rejected: dict[str, int] = {}
    tally = oracle.aggregate(checked_batches(oracle, stream, rejected, batch_size=16))
    clean = oracle.tally(reports)
    np.testing.assert_array_equal(tally.counts, clean.counts)
    np.testing.assert_array_equal(tally.cohort_n, clean.cohort_n)
    assert rejected == expected


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_valid_reports_pass_and_a_clean_stream_equals_the_batch(factory):
    for epsilon, k in ((0.5, 64), (3.0, 300), (1.0, 1024)):
        oracle = factory(epsilon, k)
        reports = _encoded(oracle, 200, seed=int(10 * epsilon))
        wire = list(user_reports(reports))
        assert all(len(data) == report_nbytes(oracle) for data in wire)
        tally = aggregate_reports(oracle, wire, batch_size=64)
        assert (tally.n, dict(tally.rejected)) == (200, {})
        np.testing.assert_array_equal(tally.counts, oracle.support_counts(reports))


def test_rejections_merge_and_bad_arguments_are_refused():
    oracle = analytics.grr(1.0, 10)
    reports = _encoded(oracle, 5)
    wire = list(user_reports(reports))
    first = aggregate_reports(oracle, [*wire[:3], b"junk"])
    second = aggregate_reports(oracle, [*wire[3:], wire[0][:-1], b""])
    merged = first.merged(second)
    assert (merged.n, dict(merged.rejected)) == (5, {"malformed_bytes": 3})
    np.testing.assert_array_equal(merged.counts, oracle.support_counts(reports))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        aggregate_reports(oracle, wire, batch_size=0)
    with pytest.raises(TypeError, match="yields bytes; got str"):
        aggregate_reports(oracle, ["not bytes"])
    bare = FrequencyOracle("bare", 1.0, 4, 0.5, 0.25, 2, oracle.encode, oracle.support_counts)
    with pytest.raises(ValueError, match="bare declares no report fields"):
        aggregate_reports(bare, wire)
    oversized = aggregate_reports(oracle, wire, max_report_nbytes=len(wire[0]) - 1)
    assert (oversized.n, dict(oversized.rejected)) == (0, {"malformed_bytes": 5})


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_chunked_encode_and_aggregate_equals_the_one_shot_count(factory):
    """The streaming path (users generated and encoded chunk by chunk, counts added) gives the
    counts of one `support_counts` over all the reports, and so does the wire path."""
    oracle = factory(1.0, 128)
    stream = zipf_items(128, 2_500, s=1.1, seed=0, chunk_users=700)  # chunks 700, 700, 700, 400
    chunked = aggregate(oracle, encode_chunks(oracle, stream.chunks(), seed=5))
    reports = list(encode_chunks(oracle, stream.chunks(), seed=5))
    one_shot = Payload({m: np.concatenate([r[m] for r in reports]) for m in reports[0]})
    assert chunked.n == 2_500 == sum(r[next(iter(r))].shape[0] for r in reports)
    np.testing.assert_array_equal(chunked.counts, oracle.support_counts(one_shot))
    wire = aggregate_reports(oracle, (b for r in reports for b in user_reports(r)))
    np.testing.assert_array_equal(wire.counts, chunked.counts)
    # chunk c draws from its own stream: changing chunk 0 leaves the reports of the others alone
    chunks = list(stream.chunks())
    changed = list(encode_chunks(oracle, [chunks[0][:10], *chunks[1:]], seed=5))
    assert all(a == b for a, b in zip(changed[1:], reports[1:], strict=True))
    assert changed[0] != reports[0]
