"""Reports as they arrive from users: bytes, one serialized report per user, checked one by one.

Client side, `encode_chunks(oracle, value_chunks, seed=...)` encodes users chunk by chunk, chunk
c with its own generator `numpy_rng(seed, client=c, purpose=...)`, so memory is one chunk
whatever n is (`aggregate(oracle, encode_chunks(...))` is the in-process streaming path), and
the reports of a chunk do not depend on how the chunks before it were consumed.
`user_reports(reports)` yields what each user of an encoded batch sends: the bytes of
`serialize(single_report(reports, i))`, a batch of one in the `lowcomm.core` wire format (its
arrays keep the user axis, of length 1). Server side, `aggregate_reports(oracle, stream)` reads
any iterable of such byte strings (a list, a socket reader, a generator over a file) and, for
each one, either accepts it or rejects it under the first reason that applies:

    malformed_bytes   not a well-formed payload: truncated, corrupted (CRC), another magic or
                      version, or oversized (more than `max_report_nbytes`)
    wrong_fields      its arrays are not exactly the oracle's declared fields (`<name>/<field>`)
    wrong_dtype       an array has another dtype than declared
    wrong_shape       another shape per user, or not exactly one report in the payload
    out_of_range      an entry outside the field's declared range [low, high)
    <rule reason>     a further rule of the oracle fails (SS: "unsorted_items"; OUE/SUE:
                      "padding_bits")

The checks are the oracle's own declaration (`FrequencyOracle.fields`, validated by the
generic code in `lowcomm.analytics.oracle`), so an oracle defines what a valid report is once,
for its in-process `support_counts` and for the wire alike. Accepted reports are buffered and
counted in batches of `batch_size` (vectorized range and rule checks, then `support_counts`),
so memory is one batch plus the `[k]` counts, whatever the length of the stream. The result is
a `Tally` whose `counts` and `n` hold the accepted reports only and whose `rejected` maps each
reason that refused at least one report to how many it refused: a malformed report is never
mixed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from lowcomm.analytics.oracle import (
    FrequencyOracle,
    Tally,
    layout_problem,
    num_reports,
    row_problems,
    row_reason,
    single_report,
)
from lowcomm.core import Payload, deserialize, numpy_rng, serialize

MALFORMED = "malformed_bytes"


def encode_chunks(oracle: FrequencyOracle, value_chunks: Iterable[np.ndarray], *, seed: int,
                  purpose: str = "ldp-encode") -> Iterator[Payload]:
    """The reports of each chunk of users' values, chunk c drawn from
    `numpy_rng(seed, client=c, purpose=f"{purpose}/{oracle.name}")` (one chunk in memory)."""
    for c, values in enumerate(value_chunks):
        yield oracle.encode(values, numpy_rng(seed, client=c, purpose=f"{purpose}/{oracle.name}"))


def user_reports(reports: Payload) -> Iterator[bytes]:
    """The bytes each user of a report batch sends, in user order (one serialized report each)."""
    for index in range(num_reports(reports)):
        yield serialize(single_report(reports, index))


def report_nbytes(oracle) -> int:
    """The serialized length of one valid report of `oracle` (a `FrequencyOracle`, or any
    oracle with a `name` and declared `fields`, such as RAPPOR's): every valid report has it,
    since each field has a fixed dtype and per-user shape."""
    if not oracle.fields:
        raise ValueError(f"{oracle.name} declares no report fields; it cannot read reports "
                         "from the wire")
    return Payload({f"{oracle.name}/{f.name}": np.zeros((1, *f.shape), dtype=f.dtype)
                    for f in oracle.fields}).nbytes


def checked_batches(oracle, stream: Iterable[bytes], rejected: dict[str, int], *,
                    batch_size: int = 4096, max_report_nbytes: int | None = None
                    ) -> Iterator[Payload]:
    """Batches (of at most `batch_size` reports) of the valid reports of `stream`, one user's
    serialized report per item; each rejected report adds 1 to `rejected[reason]` (module
    docstring). `oracle` needs only a `name` and declared `fields`, so any oracle's counting
    can run on the batches (`aggregate_reports` for a `FrequencyOracle`; `RapporOracle.aggregate`
    for RAPPOR). `max_report_nbytes` (default: 4 x the valid size + 1 KiB) bounds what is
    parsed at all."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    valid_nbytes = report_nbytes(oracle)  # raises for an oracle that declares no fields
    limit = 4 * valid_nbytes + 1024 if max_report_nbytes is None else max_report_nbytes
    name, fields = oracle.name, oracle.fields
    pending: list[Payload] = []

    def valid_batch() -> Payload:
        batch = Payload({f"{name}/{f.name}": np.concatenate([p[f"{name}/{f.name}"]
                                                             for p in pending])
                         for f in fields})
        pending.clear()
        codes = row_problems(batch, name, fields)  # [batch] 0 = valid
        for code, count in zip(*np.unique(codes[codes > 0], return_counts=True), strict=True):
            reason = row_reason(fields, int(code))
            rejected[reason] = rejected.get(reason, 0) + int(count)
        valid = codes == 0
        return Payload({m: a[valid] for m, a in batch.items()})

    for data in stream:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"a report stream yields bytes; got {type(data).__name__}")
        try:
            payload = deserialize(data, max_nbytes=limit)
        except ValueError:
            rejected[MALFORMED] = rejected.get(MALFORMED, 0) + 1
            continue
        problem = layout_problem(payload, name, fields, users=1)
        if problem is not None:
            rejected[problem[0]] = rejected.get(problem[0], 0) + 1
            continue
        pending.append(payload)
        if len(pending) == batch_size:
            yield valid_batch()
    if pending:
        yield valid_batch()


def aggregate_reports(oracle: FrequencyOracle, stream: Iterable[bytes], *,
                      batch_size: int = 4096, max_report_nbytes: int | None = None) -> Tally:
    """Support counts of the valid reports of `stream` (one user's serialized report per item)
    and the rejected ones counted by reason (`checked_batches`; module docstring)."""
    counts = np.zeros(oracle.k, dtype=np.int64)
    rejected: dict[str, int] = {}
    accepted = 0
    for batch in checked_batches(oracle, stream, rejected, batch_size=batch_size,
                                 max_report_nbytes=max_report_nbytes):
        counts += oracle.support_counts(batch)
        accepted += num_reports(batch)
    return Tally(counts, accepted, rejected)
