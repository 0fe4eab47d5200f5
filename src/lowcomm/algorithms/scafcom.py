"""SCAFCOM: Huang, Li, Li, "Stochastic Controlled Averaging for Federated Learning with
Communication Compression", ICLR 2024 (arXiv 2308.08165), Algorithm 3.

SCAFCOM is the biased-compression sibling of SCALLION (`scallion.py`): it runs the same corrected
local steps and sends one compressed vector, but a client keeps a local momentum v_i of its
gradients and compresses the difference between that momentum and its control variate, so the
control variate tracks the momentum the way EF21 tracks a gradient:

    client i:  y_i <- x;  y_i <- y_i - eta_l (g_i(y_i) - c_i + c)     (K local steps)
               gbar_i = (1/K) sum_k g_i(y_i^k) = (x - y_i)/(K eta_l) - c + c_i
               v_i <- (1 - beta) v_i + beta gbar_i                     (local momentum)
               delta_i = C(v_i - c_i);  upload delta_i;  c_i <- c_i + delta_i
    server:    x <- x - gamma (c + (1/|S|) sum_i delta_i),   gamma = eta_g eta_l K
               c <- c + (1/N) sum_i delta_i

C may be biased and only q-contractive (||C(v) - v||^2 <= q^2 ||v||^2, e.g. top-k or scaled
sign). With beta = 1 and C the identity, v_i = gbar_i and delta_i = gbar_i - c_i is exactly the
simplified SCAFFOLD message, so the run follows SCAFFOLD option II (a test checks the
trajectories agree). The client applies to c_i exactly what the server decodes. The compressor
must be stateless: the tracking c_i <- c_i + C(v_i - c_i) already is the error feedback, and a
stateful codec (its own residual) is refused. Client state: c_i and v_i, 2 d floats per client
that has taken part, kept by the runtime's store (zero before a client's first round).

Paper notation -> code: x -> `state.params`; c -> `state.control`; c_i -> client state `"c"`;
v_i -> client state `"v"`; beta -> `beta`; C -> `uplink`; K -> `local_steps`; eta_l ->
`client_lr`; eta_g -> `server_lr`; N -> `num_clients`; |S| -> the cohort size.

What was checked against the sources: the paper's abstract (arXiv html v2) and its reviews state
that SCAFCOM sends one compressed vector per round, handles biased compressors through local
momentum, and reduces to the simplified SCAFFOLD of the same paper; a third-party Flower
implementation applies the server rule above (x <- x - gamma (c + mean delta), c <- c + (|S|/N)
mean delta). Unverified: the exact lines of Algorithm 3 (the body of the paper was not readable
in our stored copies), i.e. whether v_i is updated with the mean local gradient as written here,
and its initial value (we start v_i at zero, as c_i).
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


def scafcom(model: ModelFn, *, num_clients: int, client_lr: float, local_steps: int,
            beta: float, batch_size: int | None = 10, server_lr: float = 1.0,
            uplink: Codec | None = None, downlink: Codec | None = None) -> FederatedAlgorithm:
    uplink, downlink = uplink or fp32(), downlink or fp32()
    require_stateless("scafcom", uplink, downlink)
    check_positive(num_clients=num_clients, client_lr=client_lr, server_lr=server_lr)
    if not 0 < beta <= 1:
        raise ValueError(f"beta must be in (0, 1]; got {beta}")
    schedule = LocalSchedule(batch_size=batch_size, steps=local_steps)
    layout, d = model.layout, model.layout.size
    gamma = server_lr * client_lr * local_steps

    def finish(task: ClientTask, x: torch.Tensor, c: torch.Tensor, c_i: torch.Tensor,
               local: LocalResult) -> ClientOutput:
        v_i = torch.zeros(d) if task.state is None else task.state["v"]
        # (x - y_i) / (K eta_l) = gbar_i + c - c_i for plain SGD with the drift correction
        mean_gradient = (x - local.params) / (local_steps * client_lr) - c + c_i
        v_new = (1 - beta) * v_i + beta * mean_gradient
        payload = pack(uplink, layout, {"delta": v_new - c_i}, task.generator)
        sent = unpack(uplink, layout, payload, ("delta",))["delta"]  # C(v_i - c_i)
        return ClientOutput(payload, local.steps, local.mean_loss, len(task.y),
                            {"c": c_i + sent, "v": v_new})

    def server_update(state: ControlState, uploads: Sequence[Payload]) -> ControlState:
        sent = torch.stack([unpack(uplink, layout, p, ("delta",))["delta"] for p in uploads])
        return ControlState(state.params - gamma * (state.control + sent.mean(0)),
                            state.control + sent.sum(0) / num_clients)

    client_update, client_update_batch = controlled_clients(
        model, downlink, schedule=schedule, client_lr=client_lr, finish=finish)
    hyperparams = {"num_clients": num_clients, "client_lr": client_lr,
                   "local_steps": local_steps, "beta": beta, "batch_size": batch_size,
                   "server_lr": server_lr}
    return FederatedAlgorithm(
        "scafcom", hyperparams, control_init, control_message(downlink, layout),
        client_update, server_update, downlink.name, uplink.name, d, client_update_batch,
        client_state={"c": (d,), "v": (d,)},
        upload_form=UploadForm(uplink, layout, (("delta",),), ()))
