"""`lowcomm train --fault 'kill worker W at step T'`: a worker that dies without notice.

Over torch.distributed the worker's process ends by SIGKILL after its step T, strictly inside an
inner phase; the run survives it (`train_rank(..., unannounced_leaves=True)`) and goes on as if
W had left at the boundary before T. The simulator runs exactly that: the same command gives the
same ledger in both runtimes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from lowcomm.cli.config import ConfigError
from lowcomm.cli.train_config import TrainConfig, membership_of
from lowcomm.runtime.faults import parse_worker_kill


def kills_of(c: TrainConfig) -> tuple[tuple[int, int], ...]:
    """The (worker, step) of every `--fault`, checked against the run."""
    kills = []
    for spec in c.fault:
        try:
            kills.append(parse_worker_kill(spec))
        except ValueError:
            raise ConfigError(f"train fault {spec!r} must be 'kill worker W at step T'"
                              ) from None
    if not kills:
        return ()
    scheduled = membership_of(c)
    h = scheduled.inner_steps
    if c.eval_every != h or c.steps % h:
        raise ConfigError(f"a killed worker needs a record at every boundary and a run that "
                          f"ends on one: eval_every ({c.eval_every}) must equal inner_steps "
                          f"({h}) and steps ({c.steps}) be a multiple of it")
    for w, t in kills:
        where = f"fault 'kill worker {w} at step {t}'"
        if w == 0:
            raise ConfigError(f"{where}: worker 0 gathers the run and cannot be killed")
        if not h < t < c.steps or t % h == 0:
            raise ConfigError(f"{where}: step {t} must be inside an inner phase after the "
                              f"first boundary (not a multiple of inner_steps={h}, in ({h}, "
                              f"{c.steps}))")
        boundary = t // h * h
        if w not in scheduled.live_at(t - 1) or w not in scheduled.live_at(boundary - 1):
            raise ConfigError(f"{where}: worker {w} is not live from boundary {boundary} "
                              f"through step {t}")
        if any(kind == "leave" and who == w for _, kind, who in scheduled.events):
            raise ConfigError(f"{where}: worker {w} also leaves by --membership")
    return tuple(kills)


def effective_schedule(c: TrainConfig) -> str | None:
    """The --membership string with each killed worker leaving at the boundary before its kill
    (what the run turns out to be; the simulator runs it)."""
    h = membership_of(c).inner_steps
    leaves = [f"{t // h * h}:leave {w}" for w, t in kills_of(c)]
    return ",".join(filter(None, [c.membership, *leaves])) or None


def kill_hook(c: TrainConfig, rank: int) -> Callable[[int], None] | None:
    """The hook that kills this rank's process after its fatal step, if it has one."""
    steps = [t for w, t in kills_of(c) if w == rank]
    if not steps:
        return None

    def on_step(t: int) -> None:
        if t == steps[0]:
            os.kill(os.getpid(), signal.SIGKILL)  # no farewell: an unannounced leave

    return on_step
