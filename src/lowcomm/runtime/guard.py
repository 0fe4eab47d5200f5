"""The server's guard: what it does with an upload before `server_update`, and with a client that
sent nothing.

Every parsed upload is screened (`screen`): larger than `max_upload_nbytes` is `oversized`;
then the algorithm's declared `UploadForm` (`lowcomm.algorithms.screen`) decodes each vector with
the algorithm's own codec and refuses anything `malformed`, `wrong-shape` or `non-finite`. Bytes
that do not even parse were already refused by the transport (`refused`). A client whose upload
never came is `lost` (its connection closed or its process died) or `timeout` (not by the
round's deadline).

Each of these is a dropout (`drop`): logged on the `lowcomm.runtime` logger with the client, the
round and the reason, and recorded in the ledger as a `DropEvent`, which totals and pricing ignore
and reports count. The bytes that did arrive stay in the ledger as the `CommEvent` they are. A
dropped client is excluded from the server update and the round's train loss. A client that
finished its work keeps the new client state it computed (it cannot know that its upload was
late or spoiled in transit; a killed client computed nothing): so, as in a real deployment, a
dropout can leave SCAFFOLD's c != mean c_i. The round completes with the rest; below
`min_cohort` admitted uploads the server makes no update (`RoundRecord.updated` is False) and the
model is unchanged.
"""

from __future__ import annotations

import logging

from lowcomm.algorithms import FederatedAlgorithm
from lowcomm.algorithms.screen import UploadRejectedError
from lowcomm.core import Payload
from lowcomm.cost.ledger import DropEvent, Ledger, client_name

log = logging.getLogger("lowcomm.runtime")


def screen(algorithm: FederatedAlgorithm, payload: Payload, *,
           max_upload_nbytes: int | None = None) -> None:
    """Return if the server may use `payload`; raise `UploadRejectedError` naming why not."""
    if max_upload_nbytes is not None and payload.nbytes > max_upload_nbytes:
        raise UploadRejectedError("oversized", f"{payload.nbytes} bytes exceeds "
                                               f"max_upload_nbytes={max_upload_nbytes}")
    if algorithm.upload_form is not None:
        algorithm.upload_form.check(payload)


def drop(ledger: Ledger, client: int, round: int, reason: str, detail: str) -> None:
    """Record and log that `client` contributed nothing to `round`."""
    ledger.record(DropEvent(round, client_name(client), reason))
    log.warning("round %d: client %d dropped (%s): %s", round, client, reason, detail)


def admit(algorithm: FederatedAlgorithm, payload: Payload, ledger: Ledger, *, client: int,
          round: int, max_upload_nbytes: int | None = None) -> bool:
    """`screen` the upload; on rejection `drop` the client and return False."""
    try:
        screen(algorithm, payload, max_upload_nbytes=max_upload_nbytes)
    except UploadRejectedError as err:
        drop(ledger, client, round, err.reason, err.detail)
        return False
    return True
