"""The simulator's links: every payload is serialized to real bytes, counted, and parsed back.

This is the only place the simulator records communication. The receiver gets the result of
`deserialize(serialize(payload))`, never the sender's object, so a codec whose bytes do not
round-trip fails in simulation just as it would on a real network.

`outgoing(client, round, data) -> data` is the hook fault injection (`lowcomm.runtime.faults`)
uses to corrupt a client's upload on its way to the server; the ledger records the length of what
really left. Bytes the server cannot parse raise `UploadRejectedError("refused", ...)` after they
are recorded (they crossed the link).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lowcomm.algorithms.screen import UploadRejectedError
from lowcomm.core import Payload, deserialize, serialize
from lowcomm.cost.ledger import SERVER, CommEvent, Ledger, client_name

WireTap = Callable[[str, str, bytes], None]  # (src, dst, bytes) for tests and debugging
Outgoing = Callable[[int, int, bytes], bytes]  # (client, round, bytes) -> the bytes that leave


class StarTransport:
    """Server <-> client links of a star topology, recording a `CommEvent` per transfer."""

    __slots__ = ("_ledger", "_outgoing", "_tap")

    def __init__(self, ledger: Ledger, *, tap: WireTap | None = None,
                 outgoing: Outgoing | None = None) -> None:
        self._ledger = ledger
        self._tap = tap
        self._outgoing = outgoing

    def broadcast(self, payload: Payload, clients: Sequence[int], *, round: int,
                  channel: str, codec: str) -> list[Payload]:
        """Send one payload to each client (one unicast per client: no multicast is assumed).

        Every client receives the same bytes, so they are parsed once and the (immutable)
        result is shared: the list holds one object `len(clients)` times.
        """
        data = serialize(payload)
        for client in clients:
            dst = client_name(client)
            self._ledger.record(CommEvent(round, SERVER, dst, channel, len(data), codec))
            if self._tap is not None:
                self._tap(SERVER, dst, data)
        return [deserialize(data)] * len(clients)

    def upload(self, payload: Payload, client: int, *, round: int, channel: str,
               codec: str) -> Payload:
        src = client_name(client)
        data = serialize(payload)
        if self._outgoing is not None:
            data = self._outgoing(client, round, data)
        self._ledger.record(CommEvent(round, src, SERVER, channel, len(data), codec))
        if self._tap is not None:
            self._tap(src, SERVER, data)
        if data is payload.parsed_from:  # already the parse of exactly these bytes (a worker's)
            return payload
        try:
            return deserialize(data)
        except ValueError as err:
            raise UploadRejectedError("refused", str(err)) from None
