"""FedAvg: McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient Learning of
Deep Networks from Decentralized Data", AISTATS 2017 (arXiv 1602.05629), Algorithm 1, with the
server step generalised as in Reddi et al. 2021 (FedOpt): plain averaging, FedAvgM or FedAdam.

Paper notation -> code:
    K clients, C fraction per round   -> the runtime's cohort of `clients_per_round`
    w_t (global model)                -> `state.params`
    ClientUpdate(k, w)                -> `client_update`
    E local epochs, B local batch     -> `epochs`, `batch_size` (None = full batch, B = inf)
    (or K local steps, as in later work) -> `local_steps` (replaces epochs when given)
    eta (client learning rate)        -> `client_optimizer` (sgd(lr=eta) in the paper)
    n_k, n                            -> `num_samples` sent by each client and their sum
    w_{t+1} = sum_k n_k/n w^k_{t+1}   -> `server_update` with `server_optimizer=sgd(1.0)`

Server update, with Delta_k = w^k_{t+1} - w_t:
    g_t = -sum_k (n_k / n) Delta_k          (the pseudo-gradient)
    w_{t+1} = w_t + server_optimizer(g_t)   (sgd(1.0) recovers the paper's weighted average)
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
from lowcomm.algorithms.local import Drift, LocalSchedule, local_sgd
from lowcomm.algorithms.optim import Optimizer, sgd
from lowcomm.algorithms.screen import UploadForm
from lowcomm.algorithms.vectorized import decode_rows, local_sgd_batched, vectorizable
from lowcomm.compress import Codec, fp32
from lowcomm.core import Payload
from lowcomm.models import ModelFn


def fedavg(model: ModelFn, *, client_optimizer: Optimizer, epochs: int = 1,
           local_steps: int | None = None, batch_size: int | None = 10,
           server_optimizer: Optimizer | None = None, uplink: Codec | None = None,
           downlink: Codec | None = None, prox_mu: float = 0.0) -> FederatedAlgorithm:
    """FedAvg; each client runs `epochs` passes, or exactly `local_steps` steps when given.
    `prox_mu > 0` adds FedProx's proximal term to the local objective (see `fedprox`)."""
    server_optimizer = server_optimizer or sgd(1.0)
    uplink, downlink = uplink or fp32(), downlink or fp32()
    require_persistable(uplink, downlink)
    schedule = LocalSchedule(batch_size=batch_size, epochs=epochs, steps=local_steps)
    if prox_mu < 0:
        raise ValueError(f"prox_mu must be >= 0; got {prox_mu}")
    drift = Drift(prox_mu=prox_mu) if prox_mu else None

    def client_update(message: Payload, task: ClientTask) -> ClientOutput:
        w_t = downlink.decode(message, model.layout)
        local = local_sgd(model, w_t, task.x, task.y, schedule=schedule,
                          optimizer=client_optimizer, generator=task.generator, drift=drift)
        delta = local.params - w_t  # Delta_k = w^k_{t+1} - w_t
        return client_output(uplink, delta, layout=model.layout, task=task,
                             steps=local.steps, loss=local.mean_loss)

    def server_update(state: ServerState, uploads: Sequence[Payload]) -> ServerState:
        # g_t = -sum_k (n_k / n) Delta_k;  w_{t+1} = w_t + server_optimizer(g_t)
        mean_delta = weighted_mean_upload(uploads, uplink, model.layout)
        return server_step(state, -mean_delta, server_optimizer)

    def client_update_batch(messages: Sequence[Payload],
                            tasks: Sequence[ClientTask]) -> list[ClientOutput]:
        starts = decode_rows(downlink, messages, model.layout)  # [clients, d] w_t per client
        results = local_sgd_batched(model, starts, [t.x for t in tasks], [t.y for t in tasks],
                                    schedule=schedule, optimizer=client_optimizer,
                                    generators=[t.generator for t in tasks], drift=drift)
        return [client_output(uplink, local.params - starts[i], layout=model.layout,
                              task=task, steps=local.steps, loss=local.mean_loss)
                for i, (local, task) in enumerate(zip(results, tasks, strict=True))]

    hyperparams = {"epochs": epochs, "local_steps": local_steps, "batch_size": batch_size,
                   "client_optimizer": describe_optimizer(client_optimizer),
                   "server_optimizer": describe_optimizer(server_optimizer)}
    return FederatedAlgorithm("fedavg", hyperparams, server_init(server_optimizer),
                              broadcast_params(downlink, model.layout), client_update,
                              server_update, downlink.name, uplink.name, model.layout.size,
                              client_update_batch if vectorizable(model) else None,
                              client_state=uplink_state(uplink, model.layout),
                              upload_form=UploadForm(uplink, model.layout))
