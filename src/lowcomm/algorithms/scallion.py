"""SCALLION and the simplified SCAFFOLD: Huang, Li, Li, "Stochastic Controlled Averaging for
Federated Learning with Communication Compression", ICLR 2024 (arXiv 2308.08165).

The paper observes that SCAFFOLD's two uplink vectors are linearly related,
Delta y_i = -K eta_l (Delta c_i + c), so one vector suffices:

    client i:  y_i <- x;  y_i <- y_i - eta_l (g_i(y_i) - c_i + c)   (K local steps)
               delta_i = (x - y_i) / (K eta_l) - c                    (= Delta c_i of SCAFFOLD)
               upload C(delta_i);   c_i <- c_i + alpha C(delta_i)
    server:    x <- x - gamma (c + (1/|S|) sum_i C(delta_i)),   gamma = eta_g eta_l K
               c <- c + (alpha / N) sum_i C(delta_i)

With C the identity and alpha = 1 this is exactly SCAFFOLD option II with half its uplink
(`simplified_scaffold`; a test checks the trajectories agree). SCALLION uses an unbiased
compressor C (E[C(v)] = v, E||C(v) - v||^2 <= omega ||v||^2) and alpha in (0, 1]; the theory
takes alpha ~ 1/(1 + omega). The client applies to c_i exactly what the server receives (it
decodes its own payload), so client and server stay consistent.

Paper notation -> code: x -> `state.params`; c -> `state.control`; c_i -> client state `"c"`;
K -> `local_steps`; eta_l -> `client_lr`; eta_g -> `server_lr`; alpha -> `alpha`; C -> `uplink`;
N -> `num_clients`. [The update lines follow our implementer's card, which marks the exact
placement of alpha as unverified against the paper's Algorithm 2; with alpha = 1 and C = I the
equivalence with SCAFFOLD is exact and tested.]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from lowcomm.algorithms.base import (
    ClientOutput,
    ClientTask,
    FederatedAlgorithm,
    pack,
    require_stateless,
    unpack,
)
from lowcomm.algorithms.controlled import (
    ControlState,
    check_positive,
    control_init,
    control_message,
    controlled_clients,
)
from lowcomm.algorithms.local import LocalResult, LocalSchedule
from lowcomm.algorithms.screen import UploadForm
from lowcomm.compress import Codec, fp32
from lowcomm.core import Payload
from lowcomm.models import ModelFn


def scallion(model: ModelFn, *, num_clients: int, client_lr: float, local_steps: int,
             alpha: float = 1.0, batch_size: int | None = 10, server_lr: float = 1.0,
             uplink: Codec | None = None, downlink: Codec | None = None) -> FederatedAlgorithm:
    uplink, downlink = uplink or fp32(), downlink or fp32()
    require_stateless("scallion", uplink, downlink)
    check_positive(num_clients=num_clients, client_lr=client_lr, server_lr=server_lr)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1]; got {alpha}")
    schedule = LocalSchedule(batch_size=batch_size, steps=local_steps)
    layout, d = model.layout, model.layout.size
    gamma = server_lr * client_lr * local_steps

    def finish(task: ClientTask, x: torch.Tensor, c: torch.Tensor, c_i: torch.Tensor,
               local: LocalResult) -> ClientOutput:
        delta = (x - local.params) / (local_steps * client_lr) - c  # delta_i
        payload = pack(uplink, layout, {"delta": delta}, task.generator)
        sent = unpack(uplink, layout, payload, ("delta",))["delta"]  # C(delta_i)
        return ClientOutput(payload, local.steps, local.mean_loss, len(task.y),
                            {"c": c_i + alpha * sent})

    def server_update(state: ControlState, uploads: Sequence[Payload]) -> ControlState:
        sent = torch.stack([unpack(uplink, layout, p, ("delta",))["delta"] for p in uploads])
        return ControlState(state.params - gamma * (state.control + sent.mean(0)),
                            state.control + alpha * sent.sum(0) / num_clients)

    client_update, client_update_batch = controlled_clients(
        model, downlink, schedule=schedule, client_lr=client_lr, finish=finish)
    hyperparams = {"num_clients": num_clients, "client_lr": client_lr,
                   "local_steps": local_steps, "alpha": alpha, "batch_size": batch_size,
                   "server_lr": server_lr}
    return FederatedAlgorithm(
        "scallion", hyperparams, control_init, control_message(downlink, layout),
        client_update, server_update, downlink.name, uplink.name, d, client_update_batch,
        client_state={"c": (d,)}, upload_form=UploadForm(uplink, layout, (("delta",),), ()))


def simplified_scaffold(model: ModelFn, *, num_clients: int, client_lr: float,
                        local_steps: int, batch_size: int | None = 10, server_lr: float = 1.0,
                        downlink: Codec | None = None) -> FederatedAlgorithm:
    """SCAFFOLD option II with one uplink vector: `scallion` with alpha = 1, no compression."""
    base = scallion(model, num_clients=num_clients, client_lr=client_lr,
                    local_steps=local_steps, alpha=1.0, batch_size=batch_size,
                    server_lr=server_lr, uplink=fp32(), downlink=downlink)
    return dataclasses.replace(base, name="simplified_scaffold")
