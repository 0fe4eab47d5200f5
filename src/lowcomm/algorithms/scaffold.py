"""SCAFFOLD: Karimireddy, Kale, Mohri, Reddi, Stich, Suresh, "SCAFFOLD: Stochastic Controlled
Averaging for Federated Learning", ICML 2020 (arXiv 1910.06378), Algorithm 1 with option II.

Server state: the model x and the server control variate c. Client i keeps its control variate
c_i between its rounds (zero before its first). In round t the server sends (x, c) to the cohort
S; client i runs K local steps

    y_i <- x;   y_i <- y_i - eta_l (g_i(y_i) - c_i + c)      (K times)
    c_i^+ = c_i - c + (x - y_i) / (K eta_l)                    (option II)

and uploads (Delta y_i, Delta c_i) = (y_i - x, c_i^+ - c_i) -- two vectors -- then keeps
c_i <- c_i^+. The server applies

    x <- x + eta_g (1/|S|) sum_i Delta y_i;   c <- c + (1/N) sum_i Delta c_i.

Paper notation -> code: x -> `state.params`; c -> `state.control`; c_i -> the client state
`"c"` kept by the runtime's store; K -> `local_steps`; eta_l -> `client_lr`; eta_g ->
`server_lr`; N -> `num_clients`; |S| -> the cohort size. Bytes: down 2 vectors (x, c), up 2
vectors (Delta y, Delta c). The simplified SCAFFOLD of Huang, Li, Li (ICLR 2024), which sends one
uplink vector and follows the same trajectory, is `scallion(alpha=1)` with no compression.
"""

from __future__ import annotations

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


def scaffold(model: ModelFn, *, num_clients: int, client_lr: float, local_steps: int,
             batch_size: int | None = 10, server_lr: float = 1.0, uplink: Codec | None = None,
             downlink: Codec | None = None) -> FederatedAlgorithm:
    uplink, downlink = uplink or fp32(), downlink or fp32()
    require_stateless("scaffold", uplink, downlink)
    check_positive(num_clients=num_clients, client_lr=client_lr, server_lr=server_lr)
    schedule = LocalSchedule(batch_size=batch_size, steps=local_steps)
    layout, d = model.layout, model.layout.size

    def finish(task: ClientTask, x: torch.Tensor, c: torch.Tensor, c_i: torch.Tensor,
               local: LocalResult) -> ClientOutput:
        c_plus = c_i - c + (x - local.params) / (local_steps * client_lr)  # option II
        payload = pack(uplink, layout, {"dy": local.params - x, "dc": c_plus - c_i},
                       task.generator)
        return ClientOutput(payload, local.steps, local.mean_loss, len(task.y), {"c": c_plus})

    def server_update(state: ControlState, uploads: Sequence[Payload]) -> ControlState:
        deltas = [unpack(uplink, layout, p, ("dy", "dc")) for p in uploads]
        mean_dy = torch.stack([u["dy"] for u in deltas]).mean(0)  # (1/|S|) sum Delta y_i
        sum_dc = torch.stack([u["dc"] for u in deltas]).sum(0)
        return ControlState(state.params + server_lr * mean_dy,
                            state.control + sum_dc / num_clients)

    client_update, client_update_batch = controlled_clients(
        model, downlink, schedule=schedule, client_lr=client_lr, finish=finish)
    hyperparams = {"num_clients": num_clients, "client_lr": client_lr,
                   "local_steps": local_steps, "batch_size": batch_size, "server_lr": server_lr}
    return FederatedAlgorithm(
        "scaffold", hyperparams, control_init, control_message(downlink, layout),
        client_update, server_update, downlink.name, uplink.name, d, client_update_batch,
        client_state={"c": (d,)},
        upload_form=UploadForm(uplink, layout, (("dy", "dc"),), ()))
