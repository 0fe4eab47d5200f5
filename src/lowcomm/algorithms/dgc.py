"""Deep Gradient Compression in federated training: Lin, Han, Mao, Wang, Dally, "Deep Gradient
Compression: Reducing the Communication Bandwidth for Distributed Training", ICLR 2018
(arXiv 1712.01887), as the baseline of Kuo, Kuo, Lin, "Improving Federated Learning
Communication Efficiency with Global Momentum Fusion for Gradient Compression Schemes"
(arXiv 2211.09320; code github.com/tony92151/global-momentum-fusion-fl, `client/dgc_client.py`).

Each client trains locally as in FedAvg; what it compresses is its round's accumulated update
g_k = x_t - y_k (y_k: its model after local training), passed through DGC's memory:

    u_k <- m u_k + g_k                    momentum correction
    v_k <- v_k + u_k                      local accumulation
    send top-k(v_k) per layer             k = max(1, round(keep_fraction * n_l)) in layer l
    u_k, v_k <- 0 where something was sent   momentum factor masking

(the `dgc(topk(...))` codec of `lowcomm.compress`, whose u, v persist per client in the
runtime's store). The server averages the decoded updates weighted by n_k and steps with its own
optimizer, x_{t+1} = x_t + server_optimizer(g_hat_t), as in FedOpt (the GMF configs use Adam).

Paper/code notation -> code:
    m (DGC momentum)                   -> `momentum`
    compress_rate cr (fraction kept)   -> `keep_fraction`
    u, v (momentums, velocities)       -> client state "uplink.u", "uplink.v"
    the client's local SGD             -> `client_optimizer`, `schedule`
    aggregator optimizer               -> `server_optimizer`

Two documented differences from the GMF authors' code: the code's client sends the sum of its
local step directions, (x_t - y_k) / eta_l; we send x_t - y_k (the FedAvg/FedOpt convention), so
a server optimizer means what it means in `fedavg`. Top-k, the momentum recursions and GMF's
normalised scores are invariant to that constant, and Adam on g / eta_l with eps equals Adam on g
with eps * eta_l. And the code weights the average by local step counts ceil(n_k / B); we
weight by n_k, as FedAvg (equal up to each client's partial last batch).

DGC's other two techniques, local gradient clipping and warm-up training (sparsity raised over
the first epochs), are not applied; the GMF code has neither (its compress_rate may be a schedule,
which `keep_fraction` is not).

This algorithm equals `fedavg` with `uplink=dgc(topk(keep_fraction, per_layer=True))` (a test
checks it); its own file gives DGC its name and defaults and holds the client work GMF shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

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
from lowcomm.algorithms.local import LocalSchedule, local_sgd
from lowcomm.algorithms.optim import Optimizer, sgd
from lowcomm.algorithms.screen import UploadForm
from lowcomm.algorithms.vectorized import local_sgd_batched, vectorizable
from lowcomm.compress import Codec, fp32, topk
from lowcomm.compress import dgc as dgc_memory
from lowcomm.core import Payload
from lowcomm.models import ModelFn

# (message) -> (x_t [d], what else the broadcast carried, e.g. GMF's global momentum)
Receive = Callable[[Payload], tuple[torch.Tensor, Any]]
# (what else the broadcast carried, task) -> the client's DGC-wrapped uplink codec this round
UplinkFor = Callable[[Any, ClientTask], Codec]


def check_dgc(*, keep_fraction: float, momentum: float) -> None:
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1]; got {keep_fraction}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1); got {momentum}")


def sparse_uplink(keep_fraction: float, momentum: float, score=None) -> Codec:
    """DGC's memory around a per-layer top-k (ranked by |v|, or by `score` for GMF)."""
    return dgc_memory(topk(keep_fraction, per_layer=True, score=score), momentum=momentum)


def dgc_clients(model: ModelFn, *, schedule: LocalSchedule, client_optimizer: Optimizer,
                receive: Receive, uplink_for: UplinkFor):
    """`(client_update, client_update_batch)`: local training from x_t, then the update
    g_k = x_t - y_k through the round's DGC uplink; the batched form is None when the model
    cannot be vmapped."""
    layout = model.layout

    def client_update(message: Payload, task: ClientTask) -> ClientOutput:
        x, context = receive(message)
        local = local_sgd(model, x, task.x, task.y, schedule=schedule,
                          optimizer=client_optimizer, generator=task.generator)
        return client_output(uplink_for(context, task), x - local.params,  # g_k = x_t - y_k
                             layout=layout, task=task, steps=local.steps, loss=local.mean_loss)

    def client_update_batch(messages: Sequence[Payload],
                            tasks: Sequence[ClientTask]) -> list[ClientOutput]:
        received = [receive(m) for m in messages]
        starts = torch.stack([x for x, _ in received])  # [clients, d] x_t per client
        results = local_sgd_batched(model, starts, [t.x for t in tasks], [t.y for t in tasks],
                                    schedule=schedule, optimizer=client_optimizer,
                                    generators=[t.generator for t in tasks])
        return [client_output(uplink_for(context, task), starts[i] - local.params,
                              layout=layout, task=task, steps=local.steps,
                              loss=local.mean_loss)
                for i, (local, task, (_, context)) in enumerate(zip(results, tasks, received,
                                                                     strict=True))]

    return client_update, client_update_batch if vectorizable(model) else None


def dgc(model: ModelFn, *, client_optimizer: Optimizer,
        schedule: LocalSchedule | None = None, server_optimizer: Optimizer | None = None,
        keep_fraction: float = 0.1, momentum: float = 0.9,
        downlink: Codec | None = None) -> FederatedAlgorithm:
    """DGC: FedAvg-style local training whose update crosses the uplink through DGC."""
    check_dgc(keep_fraction=keep_fraction, momentum=momentum)
    schedule = schedule or LocalSchedule()
    server_optimizer = server_optimizer or sgd(1.0)
    downlink = downlink or fp32()
    uplink = sparse_uplink(keep_fraction, momentum)
    require_persistable(uplink, downlink)
    layout = model.layout

    def server_update(state: ServerState, uploads: Sequence[Payload]) -> ServerState:
        g_hat = weighted_mean_upload(uploads, uplink, layout)  # sum_k (n_k / n) top-k(v_k)
        return server_step(state, g_hat, server_optimizer)  # x + server_optimizer(g_hat)

    client_update, client_update_batch = dgc_clients(
        model, schedule=schedule, client_optimizer=client_optimizer,
        receive=lambda message: (downlink.decode(message, layout), None),
        uplink_for=lambda context, task: uplink)
    hyperparams = {"keep_fraction": keep_fraction, "momentum": momentum,
                   "batch_size": schedule.batch_size, "epochs": schedule.epochs,
                   "local_steps": schedule.steps,
                   "client_optimizer": describe_optimizer(client_optimizer),
                   "server_optimizer": describe_optimizer(server_optimizer)}
    return FederatedAlgorithm("dgc", hyperparams, server_init(server_optimizer),
                              broadcast_params(downlink, layout), client_update, server_update,
                              downlink.name, uplink.name, layout.size, client_update_batch,
                              client_state=uplink_state(uplink, layout),
                              upload_form=UploadForm(uplink, layout))
