"""FedSGD: the baseline of McMahan et al., AISTATS 2017 (arXiv 1602.05629), Section 2.

Each selected client computes the full-batch gradient of its local loss at the current model and
sends it; the server takes one gradient step with the sample-weighted average. It is FedAvg with
B = inf and E = 1, and sends exactly as many bytes per round, so rounds-to-target compare the
two algorithms' communication directly.

Paper notation -> code:
    w_t                               -> `state.params`
    g_k = grad F_k(w_t)               -> `full_gradient(...)` on client k's n_k samples
    eta                               -> `lr`
    w_{t+1} = w_t - eta sum_k n_k/n g_k -> `server_update` with `server_optimizer=sgd(1.0)`

The server's pseudo-gradient is `eta * sum_k n_k/n g_k`, so the same server optimizers as FedAvg
apply (`sgd(1.0)` is the paper's step; momentum or Adam give FedAvgM/FedAdam-style variants).
"""

from __future__ import annotations

from collections.abc import Sequence

from lowcomm.algorithms.base import (
    ClientOutput,
    ClientTask,
    FederatedAlgorithm,
    ServerState,
    broadcast_params,
    client_output,
    describe_optimizer,
    require_persistable,
    server_init,
    server_step,
    uplink_state,
    weighted_mean_upload,
)
from lowcomm.algorithms.local import full_gradient
from lowcomm.algorithms.optim import Optimizer, sgd
from lowcomm.algorithms.screen import UploadForm
from lowcomm.algorithms.vectorized import decode_rows, full_gradient_batched, vectorizable
from lowcomm.compress import Codec, fp32
from lowcomm.core import Payload
from lowcomm.models import ModelFn


def fedsgd(model: ModelFn, *, lr: float, server_optimizer: Optimizer | None = None,
           uplink: Codec | None = None, downlink: Codec | None = None,
           chunk_size: int = 4096) -> FederatedAlgorithm:
    if lr <= 0:
        raise ValueError(f"lr must be > 0; got {lr}")
    server_optimizer = server_optimizer or sgd(1.0)
    uplink, downlink = uplink or fp32(), downlink or fp32()
    require_persistable(uplink, downlink)

    def client_update(message: Payload, task: ClientTask) -> ClientOutput:
        w_t = downlink.decode(message, model.layout)
        local = full_gradient(model, w_t, task.x, task.y, chunk_size=chunk_size)
        return client_output(uplink, local.params, layout=model.layout,  # g_k
                             task=task, steps=local.steps, loss=local.mean_loss)

    def server_update(state: ServerState, uploads: Sequence[Payload]) -> ServerState:
        # w_{t+1} = w_t - eta * sum_k (n_k / n) g_k, through the server optimizer
        mean_gradient = weighted_mean_upload(uploads, uplink, model.layout)
        return server_step(state, lr * mean_gradient, server_optimizer)

    def client_update_batch(messages: Sequence[Payload],
                            tasks: Sequence[ClientTask]) -> list[ClientOutput]:
        starts = decode_rows(downlink, messages, model.layout)  # [clients, d] w_t per client
        results = full_gradient_batched(model, starts, [t.x for t in tasks],
                                        [t.y for t in tasks], chunk_size=chunk_size)
        return [client_output(uplink, local.params, layout=model.layout, task=task,
                              steps=local.steps, loss=local.mean_loss)
                for local, task in zip(results, tasks, strict=True)]

    hyperparams = {"lr": lr, "server_optimizer": describe_optimizer(server_optimizer)}
    return FederatedAlgorithm("fedsgd", hyperparams, server_init(server_optimizer),
                              broadcast_params(downlink, model.layout), client_update,
                              server_update, downlink.name, uplink.name, model.layout.size,
                              client_update_batch if vectorizable(model) else None,
                              client_state=uplink_state(uplink, model.layout),
                              upload_form=UploadForm(uplink, model.layout))
