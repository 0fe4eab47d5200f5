"""Fault injection: clients that die, stall or send corrupted uploads, for tests and demos.

A fault is written as it reads, `"<kind> client <id> at round <t>"`:

- `kill client 2 at round 3`: client 2 receives round 3's model and dies before it uploads (the
  server sees no upload: `timeout`); it stays dead, so whenever a later cohort samples it the
  server drops it at once (`lost`). Over torch.distributed the client's rank process dies, and
  with it every client that rank hosts;
- `stall client 1 at round 2`: client 1 trains (its FLOPs are recorded) but its upload does not
  arrive by the round's deadline (`timeout`); it is alive again in later rounds;
- `corrupt client 0 at round 1`: one byte of client 0's upload is flipped in transit, so the
  checksum refuses it (`refused`). Variants name what the bytes carry instead, one per check of
  the guard (`lowcomm.runtime.guard`): `corrupt nan ...` (a NaN entry: `non-finite`),
  `corrupt shape ...` (a vector one entry short: the codec's decoder refuses it, `malformed`),
  `corrupt field ...` (an extra array: `malformed`), `corrupt oversize ...` (the upload padded to
  twice its size: `oversized` under a `max_upload_nbytes`, else `malformed`).

`FaultPlan.outgoing` is the corrupting hook of both transports (the simulator's `StarTransport`
and the gloo transport's `outgoing(dst, data)`): it rewrites bytes, so what the ledger records is
what really left.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lowcomm.core import Payload, deserialize, serialize

log = logging.getLogger("lowcomm.runtime")

KINDS = ("kill", "stall", "corrupt")
CORRUPTIONS = ("bytes", "nan", "shape", "field", "oversize")

# One grammar for every fault of every runtime: a client at a round (`lowcomm run`) or a worker
# at a step (`lowcomm train`, where only `kill` exists).
_SPEC = re.compile(r"(?P<kind>[a-z]+)(?:\s+(?P<corruption>[a-z]+))?\s+(?P<party>client|worker)"
                   r"\s+(?P<id>\d+)\s+at\s+(?P<unit>round|step)\s+(?P<at>\d+)")
_UNIT = {"client": "round", "worker": "step"}


@dataclass(frozen=True)
class Fault:
    kind: str  # one of KINDS
    client: int
    round: int
    corruption: str | None = None  # one of CORRUPTIONS for kind "corrupt"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}; got {self.kind!r}")
        if self.client < 0 or self.round < 0:
            raise ValueError(f"a fault's client and round must be >= 0; got client "
                             f"{self.client}, round {self.round}")
        if (self.kind == "corrupt") != (self.corruption is not None):
            raise ValueError(f"only a corrupt fault has a corruption; got kind {self.kind!r} "
                             f"with corruption {self.corruption!r}")
        if self.corruption is not None and self.corruption not in CORRUPTIONS:
            raise ValueError(f"corruption must be one of {CORRUPTIONS}; got "
                             f"{self.corruption!r}")

    def __str__(self) -> str:
        kind = self.kind if self.corruption in (None, "bytes") else f"corrupt {self.corruption}"
        return f"{kind} client {self.client} at round {self.round}"


def _read(spec: str, party: str, example: str):
    match = _SPEC.fullmatch(spec.strip().lower()) if isinstance(spec, str) else None
    if match is None or match["party"] != party or match["unit"] != _UNIT[party]:
        raise ValueError(f"cannot read fault {spec!r}: write {example}")
    return match


def parse_fault(spec: str) -> Fault:
    """`Fault` from `"kill client 2 at round 3"` (see the module docstring)."""
    match = _read(spec, "client", f"'<kind> client <id> at round <t>' with kind one of kill, "
                  f"stall, corrupt, or corrupt <variant> with variant one of "
                  f"{', '.join(CORRUPTIONS)}")
    kind, corruption = match["kind"], match["corruption"]
    if kind == "corrupt" and corruption is None:
        corruption = "bytes"
    try:
        return Fault(kind, int(match["id"]), int(match["at"]), corruption)
    except ValueError as err:
        raise ValueError(f"cannot read fault {spec!r}: {err}") from None


def parse_worker_kill(spec: str) -> tuple[int, int]:
    """`(worker, step)` from `"kill worker 2 at step 25"` (a replicated run's only fault)."""
    match = _read(spec, "worker", "'kill worker W at step T'")
    if match["kind"] != "kill" or match["corruption"] is not None:
        raise ValueError(f"cannot read fault {spec!r}: write 'kill worker W at step T' (a "
                         "replicated run's only fault)")
    return int(match["id"]), int(match["at"])


@dataclass(frozen=True)
class FaultPlan:
    """A run's faults, at most one per (client, round) and none after the client's kill."""

    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", tuple(self.faults))
        seen: dict[tuple[int, int], Fault] = {}
        for fault in self.faults:
            key = (fault.client, fault.round)
            if key in seen:
                raise ValueError(f"faults {str(seen[key])!r} and {str(fault)!r} both strike "
                                 f"client {fault.client} in round {fault.round}")
            seen[key] = fault
        for fault in self.faults:
            killed = self.killed_at(fault.client)
            if killed is not None and fault.round > killed:
                raise ValueError(f"fault {str(fault)!r} strikes a client killed in round "
                                 f"{killed}")

    @staticmethod
    def parse(specs: Iterable[str]) -> FaultPlan:
        return FaultPlan(tuple(parse_fault(s) for s in specs))

    def check(self, *, num_clients: int, first_round: int, last_round: int) -> None:
        """Refuse a fault that names a client or a round the run does not have."""
        for fault in self.faults:
            if fault.client >= num_clients:
                raise ValueError(f"fault {str(fault)!r}: there are only {num_clients} clients")
            if not first_round <= fault.round <= last_round:
                raise ValueError(f"fault {str(fault)!r}: the run has rounds {first_round} to "
                                 f"{last_round}")

    def at(self, client: int, round: int) -> Fault | None:
        return next((f for f in self.faults if (f.client, f.round) == (client, round)), None)

    def killed_at(self, client: int) -> int | None:
        """The round `client` is killed in, or None."""
        return next((f.round for f in self.faults if f.kind == "kill" and f.client == client),
                    None)

    def dead(self, client: int, round: int) -> bool:
        """Whether `client` died in an earlier round than `round`."""
        killed = self.killed_at(client)
        return killed is not None and killed < round

    def warn_idle(self, cohort: list[int], round: int) -> None:
        """Log the faults of `round` that strike no one (their client is not in the cohort; a
        kill still kills)."""
        for fault in self.faults:
            if fault.round == round and fault.client not in cohort and fault.kind != "kill":
                log.warning("round %d: fault %r has no effect: client %d is not in the cohort",
                            round, str(fault), fault.client)

    def outgoing(self, client: int, round: int, data: bytes) -> bytes:
        """The bytes of `client`'s upload in `round` as they leave: corrupted if a fault says so."""
        fault = self.at(client, round)
        if fault is None or fault.kind != "corrupt":
            return data
        return corrupt(data, fault.corruption)


def corrupt(data: bytes, corruption: str) -> bytes:
    """`data` (a serialized payload) with one `corruption` of CORRUPTIONS applied."""
    if corruption == "bytes":
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0xFF  # inside the arrays: the CRC-32 no longer matches
        return bytes(flipped)
    payload = deserialize(data)
    arrays = dict(payload.items())
    if corruption == "field":
        arrays["fault/extra"] = np.zeros(1, dtype=np.float32)
    elif corruption == "oversize":
        arrays["fault/padding"] = np.zeros(len(data), dtype=np.uint8)
    elif corruption in ("nan", "shape"):
        name = next((n for n, a in arrays.items() if a.dtype.kind == "f" and a.size), None)
        if name is None:
            raise ValueError(f"cannot corrupt {corruption}: the payload holds no float array; "
                             f"it holds {sorted(arrays)}")
        values = np.array(arrays[name], copy=True)
        if corruption == "nan":
            values.flat[0] = np.nan
        else:
            values = values.reshape(-1)[:-1]
        arrays[name] = values
    else:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}; got {corruption!r}")
    return serialize(Payload(arrays))
