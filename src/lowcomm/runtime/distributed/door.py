"""Joining a run: rendezvous bound to one address, a gloo group, and a shared-secret check
before any payload is accepted.

`join` binds everything it listens on to `bind_address` (127.0.0.1 by default): rank 0's
rendezvous store (torch's `TCPStore` would otherwise listen on every interface) and every
rank's gloo device. Once the group exists, `check_token` runs a challenge-response over it:
every rank sends a fresh 32-byte nonce to every other rank, then an HMAC-SHA256, keyed by the
shared token, of all the nonces with its own rank and the world size. Each rank verifies every
other rank's proof (`hmac.compare_digest`); a rank whose proof does not match is refused and
logged, and the run does not start (every rank raises `TokenRefusedError`). The token itself never
crosses the wire, and a recorded proof is useless in another run (its nonces differ).

What this does not do: gloo neither encrypts nor authenticates individual messages, so anyone
on the path between the machines can read or alter payloads after the handshake. Keep runs on
loopback or a private network, or tunnel them (VPN, SSH, WireGuard).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from datetime import timedelta

import numpy as np
import torch.distributed as dist

from lowcomm.core import Payload, serialize
from lowcomm.core.payload import DEFAULT_MAX_NBYTES
from lowcomm.runtime.distributed.transport import Outgoing, RankTransport, log, wire_tag

PROOF = b"lowcomm-join-v1"
HANDSHAKE_MAX_NBYTES = 256  # an unauthenticated peer may not make us allocate more


class TokenRefusedError(PermissionError):
    """A rank did not prove the shared token; the run does not start."""


def check_args(*, rank: int, world_size: int, master_port: int, token: str,
               bind_address: str, timeout_seconds: float) -> None:
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1; got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}); got {rank!r}")
    if not isinstance(master_port, int) or not 0 < master_port < 65536:
        raise ValueError(f"master_port must be in 1..65535; got {master_port!r}")
    if not isinstance(token, str) or len(token) < 16:
        raise ValueError("token must be a shared secret of at least 16 characters "
                         "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    try:
        wildcard = ipaddress.ip_address(bind_address).is_unspecified
    except ValueError:
        wildcard = False  # a host name
    if wildcard:
        raise ValueError(f"bind_address must be an address the other ranks can reach (gloo "
                         f"tells them where to connect); got {bind_address!r}")
    if not timeout_seconds > 0:
        raise ValueError(f"timeout_seconds must be > 0; got {timeout_seconds}")


def join(*, rank: int, world_size: int, master_addr: str, master_port: int, token: str,
         bind_address: str = "127.0.0.1", timeout_seconds: float = 300.0,
         max_nbytes: int = DEFAULT_MAX_NBYTES, outgoing: Outgoing | None = None,
         serve_store: bool | None = None) -> RankTransport:
    """Rendezvous at `master_addr:master_port`, form the gloo group, check the token.
    `max_nbytes` is the largest payload this rank accepts; `outgoing` is the transport's hook
    for fault injection (`RankTransport`). Rank 0 serves the rendezvous store unless
    `serve_store` is False: under torchrun (`TORCHELASTIC_USE_AGENT_STORE=True`) torchrun's
    agent serves it and every rank is its client."""
    check_args(rank=rank, world_size=world_size, master_port=master_port, token=token,
               bind_address=bind_address, timeout_seconds=timeout_seconds)
    timeout = timedelta(seconds=timeout_seconds)
    listener = None
    if rank == 0 if serve_store is None else serve_store:
        listener = socket.create_server((bind_address, master_port), backlog=max(world_size, 16))
        store = dist.TCPStore(master_addr, master_port, world_size, True, timeout,
                              wait_for_workers=False, master_listen_fd=listener.fileno())
    else:
        store = dist.TCPStore(master_addr, master_port, world_size, False, timeout)
    options = dist.ProcessGroupGloo._Options()
    options._devices = [dist.ProcessGroupGloo.create_device(hostname=bind_address)]
    options._timeout = timeout
    group = dist.ProcessGroupGloo(store, rank, world_size, options)
    transport = RankTransport(group, rank=rank, world_size=world_size,
                              timeout_seconds=timeout_seconds, max_nbytes=max_nbytes,
                              outgoing=outgoing,
                              keep=(store, listener), store=store)
    check_token(transport, token)
    return transport


def _proof(token: str, nonces: list[bytes], rank: int, world_size: int) -> bytes:
    message = PROOF + b"".join(nonces) + rank.to_bytes(4, "little") + \
        world_size.to_bytes(4, "little")
    return hmac.new(token.encode(), message, hashlib.sha256).digest()


def check_token(transport: RankTransport, token: str) -> None:
    """Challenge-response over the group (module docstring); raises `TokenRefusedError`."""
    me, p = transport.rank, transport.world_size
    others = [r for r in range(p) if r != me]
    if not others:
        return

    def everyone(name: str, value: bytes) -> dict[int, bytes]:
        data = Payload({name: np.frombuffer(value, np.uint8)})
        got, _ = transport.exchange([(r, serialize(data)) for r in others], others,
                                    tag=wire_tag(f"join|{name}"), what=f"the join {name}",
                                    control=True, max_nbytes=HANDSHAKE_MAX_NBYTES)
        return {r: bytes(got[r][name]) if name in got[r] else b"" for r in others}

    nonce = secrets.token_bytes(32)
    nonces = {**everyone("nonce", nonce), me: nonce}
    ordered = [nonces[r] for r in range(p)]
    proofs = everyone("proof", _proof(token, ordered, me, p))
    wrong = [r for r in others
             if not hmac.compare_digest(proofs[r], _proof(token, ordered, r, p))]
    if wrong:
        message = (f"rank {me} refused rank(s) {wrong}: their proof of the shared token does "
                   "not match this rank's token (is LOWCOMM_TOKEN the same on every rank?); "
                   "the run does not start")
        log.warning(message)
        transport.close()
        raise TokenRefusedError(message)
