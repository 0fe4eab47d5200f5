"""The shape every star-topology (server + clients) algorithm takes.

An algorithm is a frozen container of pure functions, as in fedjax's `FederatedAlgorithm`:
the server's message, the client's work and the server's update are separate functions, and what
one side sends the other is a `Payload`. The runtime moves payloads (as real bytes), samples
cohorts, records costs and evaluates; the algorithm never sees transport, threads or bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lowcomm.algorithms.screen import UploadForm
from lowcomm.core import Layout, Payload


@dataclass(frozen=True)
class ClientTask:
    """What a client has in a round: its id, its local training data and its random stream."""

    client_id: int
    round: int
    x: torch.Tensor  # [n, *input_shape]
    y: torch.Tensor  # [n]
    generator: torch.Generator
    state: dict[str, torch.Tensor] | None = None  # persistent client state; None the first time


@dataclass(frozen=True)
class ClientOutput:
    payload: Payload  # the uplink message
    steps: dict[int, int]  # batch size -> number of forward+backward steps, for FLOP accounting
    train_loss: float
    num_samples: int
    state: dict[str, torch.Tensor] | None = None  # the client's new persistent state, if any


@dataclass(frozen=True)
class ServerState:
    params: torch.Tensor  # [d] the global model x_t
    opt_state: Any  # the server optimizer's state


@dataclass(frozen=True)
class FederatedAlgorithm:
    name: str
    hyperparams: dict[str, Any]
    init: Callable[[torch.Tensor], Any]  # initial params -> server state (has `.params`)
    server_message: Callable[[Any], Payload]  # server state -> broadcast to the cohort
    client_update: Callable[[Payload, ClientTask], ClientOutput]
    server_update: Callable[[Any, Sequence[Payload]], Any]  # (state, uploads) -> new state
    downlink_codec: str
    uplink_codec: str
    num_params: int
    # The same client work for many clients at once (stacked parameters, vmap), or None when the
    # model cannot be vmapped. Must equal mapping `client_update` over the clients.
    client_update_batch: Callable[[Sequence[Payload], Sequence[ClientTask]],
                                  list[ClientOutput]] | None = None
    # Fields (name -> shape) of the state each client keeps between its rounds, stored by the
    # runtime (e.g. SCAFFOLD's control variate c_i: {"c": (d,)}); None for stateless clients.
    client_state: dict[str, tuple[int, ...]] | None = None
    # True when the algorithm needs an initial round in which every client takes part before
    # training (FedAMD's full gradients at x_0). The runtime then runs it as round 0: the same
    # broadcast, `client_update` (on tasks with `round == 0`), uploads and `server_update` as
    # any round, with every client in id order, recorded in the ledger under round 0.
    initial_full_round: bool = False
    # What a well-formed upload holds (`lowcomm.algorithms.screen`): the runtime checks every
    # parsed upload against it before `server_update` sees it, and refuses the rest.
    upload_form: UploadForm | None = None


def server_init(optimizer: Any) -> Callable[[torch.Tensor], ServerState]:
    """`init` of an algorithm whose server state is the model and its optimizer's state."""
    def init(params: torch.Tensor) -> ServerState:
        return ServerState(params.detach().clone(), optimizer.init(params))

    return init


def broadcast_params(codec: Any, layout: Layout,
                     generator: torch.Generator | None = None) -> Callable[[ServerState], Payload]:
    """`server_message` that sends the global model x_t encoded by a stateless `codec`."""
    codec_state = codec.init(layout)  # constant for a stateless codec (at most the layout)

    def server_message(state: ServerState) -> Payload:
        return codec.encode(state.params, codec_state, generator)[0]

    return server_message


UPLINK = "uplink."  # prefix of the uplink codec's fields in a client's persistent state


def uplink_state(codec: Any, layout: Layout) -> dict[str, tuple[int, ...]] | None:
    """The client-state fields a stateful uplink codec keeps per client (None if stateless)."""
    if codec.persist is None:
        return None
    return {UPLINK + name: shape for name, shape in codec.persist.shapes(layout).items()}


def client_output(codec: Any, vector: torch.Tensor, *, layout: Layout, task: ClientTask,
                  steps: dict[int, int], loss: float) -> ClientOutput:
    """Encode a client's `[d]` result and attach its sample count n_k, which crosses the wire
    with it (8 bytes plus its descriptor) for the weighted average. A stateful codec (error
    feedback, DGC) continues from the client's saved state and returns its new state."""
    if codec.persist is None:
        payload, _ = codec.encode(vector, codec.init(layout), task.generator)
        new_state = None
    else:
        saved = None if task.state is None else {
            name[len(UPLINK):]: value for name, value in task.state.items()
            if name.startswith(UPLINK)}
        payload, codec_state = codec.encode(vector, codec.persist.restore(layout, saved),
                                            task.generator)
        new_state = {UPLINK + name: value
                     for name, value in codec.persist.export(codec_state).items()}
    n_k = len(task.y)
    counts = {"num_samples": np.array([n_k], dtype=np.int64)}
    return ClientOutput(payload.merged(counts), steps, loss, n_k, new_state)


def pack(codec: Any, layout: Layout, vectors: dict[str, torch.Tensor],
         generator: torch.Generator | None = None) -> Payload:
    """Several `[d]` vectors in one payload, each encoded by a stateless `codec` and its arrays
    prefixed by the vector's name (e.g. SCAFFOLD's downlink `x` and `c`)."""
    arrays = {}
    for key, vector in vectors.items():
        payload, _ = codec.encode(vector, codec.init(layout), generator)
        arrays.update({f"{key}:{name}": array for name, array in payload.items()})
    return Payload(arrays)


def unpack(codec: Any, layout: Layout, payload: Payload, keys: Sequence[str]
           ) -> dict[str, torch.Tensor]:
    """The vectors `pack` put in a payload, decoded."""
    out = {}
    for key in keys:
        prefix = f"{key}:"
        part = {name[len(prefix):]: payload[name] for name in payload if name.startswith(prefix)}
        if not part:
            raise ValueError(f"payload holds no vector {key!r}; it holds {sorted(payload)}")
        out[key] = codec.decode(Payload(part), layout)
    return out


def describe_optimizer(optimizer: Any) -> dict[str, Any]:
    return {"name": optimizer.name, **optimizer.hyperparams}


def weighted_mean(vectors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """`sum_k (w_k / sum_j w_j) * v_k` over `[d]` vectors."""
    if len(vectors) != len(weights) or not vectors:
        raise ValueError(f"need one weight per vector and at least one vector; got "
                         f"{len(vectors)} vectors and {len(weights)} weights")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"weights must sum to > 0; got {total}")
    mean = torch.zeros_like(vectors[0])  # a running sum: no [clients, d] copy of the cohort
    for vector, weight in zip(vectors, weights, strict=True):
        mean.add_(vector, alpha=weight / total)
    return mean


def weighted_mean_upload(uploads: Sequence[Payload], codec: Any, layout: Layout) -> torch.Tensor:
    """Decode each client's upload with `codec` and average weighted by its `num_samples`."""
    vectors = [codec.decode(p, layout) for p in uploads]
    return weighted_mean(vectors, [int(p["num_samples"][0]) for p in uploads])


def server_step(state: ServerState, pseudo_gradient: torch.Tensor, optimizer: Any) -> ServerState:
    """`x_{t+1} = x_t + optimizer(g_t)`: the server optimizer applied to a pseudo-gradient."""
    params, opt_state = optimizer.apply(state.params, pseudo_gradient, state.opt_state)
    return ServerState(params, opt_state)


def require_stateless(algorithm: str, *codecs: Any) -> None:
    for codec in codecs:
        if codec.stateful:
            raise ValueError(f"codec {codec.name!r} keeps per-client state, which {algorithm} "
                             "does not store; use a stateless codec")


def require_persistable(uplink: Any, downlink: Any) -> None:
    """A stateful uplink must say how its state persists; the broadcast must be stateless; an
    uplink whose decode is an increment (EF21) needs an algorithm that accumulates it."""
    if uplink.stateful and uplink.persist is None:
        raise ValueError(f"codec {uplink.name!r} keeps per-client state but cannot store it")
    if getattr(uplink, "receiver_accumulates", False):
        raise ValueError(f"codec {uplink.name!r} sends increments of a tracked estimate that "
                         "the receiver must accumulate; use the ef21 algorithm")
    if downlink.stateful:
        raise ValueError(f"downlink codec {downlink.name!r} keeps state; a broadcast codec "
                         "must be stateless")
