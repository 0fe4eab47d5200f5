"""EF21 with partial participation: Richtarik, Sokolov, Fatkhullin, "EF21: A New, Simpler,
Theoretically Better, and Practically Faster Error Feedback", NeurIPS 2021 (arXiv 2106.05203),
and its partial-participation variant EF21-PP from Fatkhullin, Sokolov, Gorbunov, Li, Richtarik,
"EF21 with Bells & Whistles" (arXiv 2110.03294).

Every client i keeps a tracked estimate g_i of its full local gradient; the server keeps their
mean g = (1/N) sum_i g_i. A round, with the cohort S_t sampled by the runtime:

    server broadcasts x
    client i in S_t:   c_i = C(grad f_i(x) - g_i);   g_i <- g_i + c_i;   upload c_i
    client i not in S_t: g_i unchanged (it hears nothing)
    server:            g <- g + (1/N) sum_{i in S_t} c_i;   x <- x - gamma g

so g = (1/N) sum_i g_i over *all* N clients at every round (a test checks the invariant). The
client side is the `ef21(C)` codec of `lowcomm.compress` (g_i persists per client in the
runtime's store; its decode is the increment c_i); the accumulation is `server_update` here.
With C the identity and every client taking part this is distributed gradient descent.

Paper notation -> code:
    x^t                              -> `state.params`
    g_i^t (per client)               -> client state "uplink.h"
    g^t = (1/n) sum_i g_i^t          -> `state.estimate`
    C (contractive compressor)       -> `uplink`, e.g. topk(0.01) (wrapped in `ef21` here)
    c_i^t                            -> the decoded upload
    gamma, n                         -> `lr`, `num_clients`
    S_t (EF21-PP's sampled clients)  -> the runtime's cohort (uniform without replacement)

Facts checked against the authors' EF21-PP experiment code (github IgorSokoloff/
ef21_b-w_experiements_source_code, `ef21_pp.py`): a non-sampled client's g_i stays put and the
server's g is the mean over all N clients (no 1/p rescaling). Differences: the authors start
from g_i^0 = grad f_i(x^0), every client's full uncompressed gradient; we start from g_i = 0, so
there is no free uncompressed round and the first step of each client is C(grad f_i(x)); and
our round applies the step after the new g (paper's sequence with g^0 = 0, shifted by one).
The uniform weights 1/N are the paper's f = (1/n) sum_i f_i (n_k travels with each upload, as in
every algorithm here, but is not used). [U: the paper's Algorithm 1 and EF21-PP's pseudocode
themselves were not retrieved; the update lines follow the authors' code and our card.]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lowcomm.algorithms.base import (
    ClientOutput,
    ClientTask,
    FederatedAlgorithm,
    broadcast_params,
    client_output,
    uplink_state,
)
from lowcomm.algorithms.local import full_gradient
from lowcomm.algorithms.screen import UploadForm
from lowcomm.algorithms.vectorized import decode_rows, full_gradient_batched, vectorizable
from lowcomm.compress import Codec, fp32
from lowcomm.compress import ef21 as ef21_memory
from lowcomm.compress.codec import is_int
from lowcomm.core import Payload
from lowcomm.models import ModelFn


@dataclass(frozen=True)
class EF21State:
    params: torch.Tensor  # [d] x
    estimate: torch.Tensor  # [d] g = (1/N) sum_i g_i


def _init(params: torch.Tensor) -> EF21State:
    return EF21State(params.detach().clone(), torch.zeros_like(params))


def ef21(model: ModelFn, *, num_clients: int, lr: float, uplink: Codec | None = None,
         downlink: Codec | None = None, chunk_size: int = 4096) -> FederatedAlgorithm:
    """EF21(-PP) with full local gradients; `uplink` is the compressor C (stateless; it is
    wrapped in `ef21`), or a codec already wrapped in `ef21`."""
    if not is_int(num_clients) or num_clients < 1:
        raise ValueError(f"num_clients must be an integer >= 1; got {num_clients!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr}")
    compressor, downlink = uplink or fp32(), downlink or fp32()
    if downlink.stateful:
        raise ValueError(f"downlink codec {downlink.name!r} keeps state; a broadcast codec "
                         "must be stateless")
    codec = compressor if compressor.receiver_accumulates else ef21_memory(compressor)
    layout = model.layout

    def client_update(message: Payload, task: ClientTask) -> ClientOutput:
        x = downlink.decode(message, layout)
        local = full_gradient(model, x, task.x, task.y, chunk_size=chunk_size)
        # c_i = C(grad f_i(x) - g_i); g_i <- g_i + c_i (the codec's persisted state)
        return client_output(codec, local.params, layout=layout, task=task, steps=local.steps,
                             loss=local.mean_loss)

    def server_update(state: EF21State, uploads: Sequence[Payload]) -> EF21State:
        increments = torch.zeros_like(state.estimate)
        for payload in uploads:
            increments.add_(codec.decode(payload, layout))  # c_i
        estimate = state.estimate + increments / num_clients  # g <- g + (1/N) sum_S c_i
        return EF21State(state.params - lr * estimate, estimate)  # x <- x - gamma g

    def client_update_batch(messages: Sequence[Payload],
                            tasks: Sequence[ClientTask]) -> list[ClientOutput]:
        starts = decode_rows(downlink, messages, layout)  # [clients, d] x per client
        results = full_gradient_batched(model, starts, [t.x for t in tasks],
                                        [t.y for t in tasks], chunk_size=chunk_size)
        return [client_output(codec, local.params, layout=layout, task=task,
                              steps=local.steps, loss=local.mean_loss)
                for local, task in zip(results, tasks, strict=True)]

    hyperparams = {"num_clients": num_clients, "lr": lr}
    return FederatedAlgorithm("ef21", hyperparams, _init, broadcast_params(downlink, layout),
                              client_update, server_update, downlink.name, codec.name,
                              layout.size, client_update_batch if vectorizable(model) else None,
                              client_state=uplink_state(codec, layout),
                              upload_form=UploadForm(codec, layout))
