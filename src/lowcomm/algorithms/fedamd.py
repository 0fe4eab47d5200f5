"""FedAMD: Wu, Guo, Qu, He, Liu, Gao, "Anchor Sampling for Federated Learning with Partial Client
Participation", ICML 2023 (arXiv 2206.05891); authors' code github.com/HarliWu/FedAMD.

The server keeps, for every client i, an anchor gradient g_i (the client's "bullseye": the
gradient of its loss on all its local data, at the model of the last round it was an anchor), and
broadcasts x and gbar = (1/N) sum_i g_i. Each sampled client is an anchor with probability p,
otherwise a miner:

    anchor i:  upload g_i = grad f_i(x) (full local batch);  the server replaces its g_i
    miner i:   y^0 = x;  v^0 = gbar;  y^1 = y^0 - eta v^0
               for k = 1 .. K-1, on a fresh minibatch xi_k:
                   v^k = v^{k-1} + grad f_i(y^k; xi_k) - grad f_i(y^{k-1}; xi_k)   (SARAH/PAGE)
                   y^{k+1} = y^k - eta v^k
               upload x - y^K
    server:    x <- x - eta_g (1/|M|) sum_{i in M} (x - y_i^K)   (M: this round's miners;
               x stays put when every sampled client is an anchor);  gbar <- (1/N) sum_i g_i

Round 0 (from the authors' code, before training): every client uploads grad f_i(x_0) so that
every g_i is set. It runs through the runtime as a real round (`initial_full_round`): N uploads
of d floats, recorded in the ledger under round 0, so the comparison on bytes includes it.

The authors' code computes both gradients of the recursion at every step, also at k = 0 where
y^{k-1} = y^k = x and they cancel; we skip that pair, so a miner computes 2 (K - 1) minibatch
gradients (counted as such) for the same iterates. K must therefore be >= 2.

Memory: the server holds g_i for all N clients, an [N, d] float32 matrix (4 N d bytes, e.g.
80 MB for N = 100 and the 199,210-parameter 2NN), copied when anchors replace rows. Clients keep
no state. Who sent an upload is part of the upload (an int64 client id, 8 bytes plus its
descriptor, counted), since the server must know whose g_i to replace.

Randomness: a client's role is drawn first from its own round stream (`task.generator`, derived
from (seed, round, client)), then its minibatches; runs are reproducible from the seed.

Paper notation -> code: x -> `state.params`; g_i -> `state.anchor_gradients[i]`; gbar ->
`state.mean_anchor_gradient`; p -> `anchor_prob`; K -> `local_steps`; eta -> `client_lr`;
eta_g -> `server_lr`; minibatch size -> `batch_size`; N -> `num_clients`.

Checked against the sources: the abstract (anchors compute a large-batch gradient, miners take
several small-batch local steps guided by the anchors and update the global model) and the
authors' code (round-0 gradients of all clients; gbar as the uniform mean of all g_i, computed
before the round's anchors replace theirs; a Bernoulli(p) role per sampled client; the
recursion above on one minibatch per step; upload x - y^K; server step with eta_g on the miners'
mean; x unchanged without miners). Differences: the code treats p >= 1 as a period schedule
(anchors every p-th round) and so makes every client a miner at p = 1; here p is always a
probability and p = 1 makes every sampled client an anchor. Unverified: the paper's own
pseudocode (only its abstract was readable in our stored copies).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lowcomm.algorithms.base import (
    ClientOutput,
    ClientTask,
    FederatedAlgorithm,
    pack,
    require_stateless,
    unpack,
)
from lowcomm.algorithms.controlled import check_positive
from lowcomm.algorithms.local import LocalResult, LocalSchedule, full_gradient
from lowcomm.algorithms.screen import Count, UploadForm
from lowcomm.compress import Codec, fp32
from lowcomm.core import Payload
from lowcomm.models import ModelFn


@dataclass(frozen=True)
class AnchorState:
    params: torch.Tensor  # [d] x
    anchor_gradients: torch.Tensor  # [N, d] g_i, the last anchor gradient of every client
    mean_anchor_gradient: torch.Tensor  # [d] gbar = (1/N) sum_i g_i


def miner_steps(model: ModelFn, x: torch.Tensor, mean_anchor_gradient: torch.Tensor,
                data_x: torch.Tensor, data_y: torch.Tensor, *, schedule: LocalSchedule,
                lr: float, generator: torch.Generator) -> LocalResult:
    """The miner's K steps from x with the recursive estimate v started at gbar; `params` of
    the result is y^K. `schedule.steps` is K - 1: the first step uses gbar alone."""
    y_prev = x.detach().clone()
    v = mean_anchor_gradient.detach().clone()  # v^0 = gbar
    y = y_prev - lr * v  # y^1
    trainer = model.trainer()  # one per process: its gradient buffer is reused by each call
    loss_sum = torch.zeros(())
    batches = schedule.plan(len(data_y), generator)
    for idx in batches:
        trainer.bind(y)
        loss, grad = trainer.loss_and_grad(data_x[idx], data_y[idx])
        v = v + grad  # + grad f(y^k; xi_k)
        trainer.bind(y_prev)
        v -= trainer.loss_and_grad(data_x[idx], data_y[idx])[1]  # - grad f(y^{k-1}; xi_k)
        y_prev, y = y, y - lr * v
        loss_sum += loss
    taken = Counter(len(idx) for idx in batches)
    return LocalResult(y, {size: 2 * n for size, n in taken.items()},
                       float(loss_sum) / len(batches))


def fedamd(model: ModelFn, *, num_clients: int, client_lr: float, local_steps: int,
           anchor_prob: float = 0.2, batch_size: int | None = 64, server_lr: float = 1.0,
           uplink: Codec | None = None, downlink: Codec | None = None) -> FederatedAlgorithm:
    uplink, downlink = uplink or fp32(), downlink or fp32()
    require_stateless("fedamd", uplink, downlink)
    check_positive(num_clients=num_clients, client_lr=client_lr, server_lr=server_lr)
    if not 0 < anchor_prob <= 1:
        raise ValueError(f"anchor_prob must be in (0, 1]; got {anchor_prob}")
    if local_steps < 2:
        raise ValueError(f"local_steps must be >= 2 (a miner's first step uses the anchors' "
                         f"mean gradient alone); got {local_steps}")
    schedule = LocalSchedule(batch_size=batch_size, steps=local_steps - 1)
    layout, d = model.layout, model.layout.size

    def init(params: torch.Tensor) -> AnchorState:
        # every g_i is set by round 0 before training; zeros only until then
        return AnchorState(params.detach().clone(), torch.zeros(num_clients, d), torch.zeros(d))

    def server_message(state: AnchorState) -> Payload:
        return pack(downlink, layout, {"x": state.params, "g": state.mean_anchor_gradient})

    def client_update(message: Payload, task: ClientTask) -> ClientOutput:
        received = unpack(downlink, layout, message, ("x", "g"))
        x = received["x"]
        anchor = task.round == 0 or bool(torch.rand((), generator=task.generator) < anchor_prob)
        if anchor:
            local = full_gradient(model, x, task.x, task.y)  # g_i, in chunks of bounded size
            payload = pack(uplink, layout, {"g": local.params}, task.generator)
        else:
            local = miner_steps(model, x, received["g"], task.x, task.y, schedule=schedule,
                                lr=client_lr, generator=task.generator)
            payload = pack(uplink, layout, {"dx": x - local.params}, task.generator)
        sender = {"client": np.array([task.client_id], dtype=np.int64)}
        return ClientOutput(payload.merged(sender), local.steps, local.mean_loss, len(task.y))

    def server_update(state: AnchorState, uploads: Sequence[Payload]) -> AnchorState:
        anchors: dict[int, torch.Tensor] = {}
        moves = []
        for payload in uploads:
            client = int(payload["client"][0])
            if not 0 <= client < num_clients:
                raise ValueError(f"upload from client {client}, but num_clients is "
                                 f"{num_clients}")
            if any(name.startswith("g:") for name in payload):
                anchors[client] = unpack(uplink, layout, payload, ("g",))["g"]
            else:
                moves.append(unpack(uplink, layout, payload, ("dx",))["dx"])
        params = state.params
        if moves:  # x <- x - eta_g * mean over miners of (x - y^K)
            params = params - server_lr * torch.stack(moves).mean(0)
        gradients = state.anchor_gradients
        if anchors:
            gradients = gradients.clone()  # ours: rows replaced in place
            for client, g in anchors.items():
                gradients[client] = g
        return AnchorState(params, gradients, gradients.mean(0))

    hyperparams = {"num_clients": num_clients, "client_lr": client_lr,
                   "local_steps": local_steps, "anchor_prob": anchor_prob,
                   "batch_size": batch_size, "server_lr": server_lr}
    return FederatedAlgorithm("fedamd", hyperparams, init, server_message, client_update,
                              server_update, downlink.name, uplink.name, d,
                              initial_full_round=True,
                              upload_form=UploadForm(uplink, layout, (("g",), ("dx",)),
                                                     (Count("client", 0, num_clients),)))
