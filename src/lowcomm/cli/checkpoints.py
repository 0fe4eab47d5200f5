"""Checkpoints for the commands that train (`lowcomm run`, `lowcomm train`): the policy from the
config, the config's options that determine the result, and the checked resume point.

Cost models (section "cost") only price the ledger afterwards and bookkeeping (section "output":
record name, database, checkpoint options) never reaches the run, so neither joins the options a
resumed run must share with its checkpoint; nor do folder locations (`data_dir`,
`traces_dir`), which say where data is, not what it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lowcomm import cost
from lowcomm.cli.config import ConfigError
from lowcomm.runtime.checkpoint import Checkpoint, CheckpointError, CheckpointPolicy, resume_point
from lowcomm.runtime.simulator import checkpoint_options, resolve_executor
from lowcomm.runtime.workers import training_options

RESULT_FREE_SECTIONS = ("cost", "output")
LOCATIONS = ("data_dir", "traces_dir")


def result_options(c: Any) -> dict[str, Any]:
    """The config's options that can change the trained parameters or the ledger."""
    return {f.name: getattr(c, f.name) for f in dataclasses.fields(c)
            if f.metadata.get("section") not in RESULT_FREE_SECTIONS and f.name not in LOCATIONS}


def checkpoint_policy(c: Any) -> CheckpointPolicy | None:
    """The config's checkpoint policy, or None without `checkpoint_dir`."""
    if c.checkpoint_dir is None:
        return None
    return CheckpointPolicy(c.checkpoint_dir, every=c.checkpoint_every, keep=c.checkpoint_keep,
                            options={"config": result_options(c)})


def resume_checkpoint(c: Any, options: Mapping[str, Any]) -> Checkpoint | None:
    """With `resume`, the last checkpoint of `checkpoint_dir`, checked against `options`; a
    missing, damaged or other-options checkpoint is a one-line `ConfigError`."""
    if not c.resume:
        return None
    try:
        return resume_point(c.checkpoint_dir, options=options)
    except CheckpointError as err:
        raise ConfigError(str(err)) from None


@dataclass(frozen=True)
class Continuation:
    """Where a run writes checkpoints (`policy`) and the checkpoint it continues from."""

    policy: CheckpointPolicy | None = None
    resume: Checkpoint | None = None

    @property
    def resumed_from(self) -> int | None:
        """The last round (or step) done before this process started, or None if fresh."""
        return None if self.resume is None else self.resume.next_round - 1


def run_continuation(c: Any, parts: Any, settings: Any, executor: Any, faults: Any
                     ) -> Continuation:
    """`lowcomm run`'s policy and, with `resume`, its checkpoint checked against this run's
    options (before any record is started, so a refused checkpoint leaves no failed record)."""
    policy = checkpoint_policy(c)
    if not c.resume:
        return Continuation(policy)
    flops = cost.FlopCounter(parts.spec.key, parts.spec.build, input_dtype=parts.spec.input_dtype)
    execution = resolve_executor(parts.algorithm, parts.dataset, flops, executor).name
    return Continuation(policy, resume_checkpoint(c, checkpoint_options(
        parts.algorithm, parts.dataset, parts.params, settings, execution, policy,
        faults=faults)))


def star_continuation(c: Any, parts: Any, settings: Any, executor: Any, faults: Any,
                      transport: Any) -> Continuation:
    """This rank's policy and, with `resume`, its part of the checkpoint of a distributed
    `lowcomm run` (every rank calls it: the ranks agree on rank 0's round)."""
    policy = checkpoint_policy(c)
    if not c.resume:
        return Continuation(policy)
    from lowcomm.runtime.distributed.checkpoint import resume_rank, star_options

    flops = cost.FlopCounter(parts.spec.key, parts.spec.build, input_dtype=parts.spec.input_dtype)
    options = star_options(parts.algorithm, parts.dataset, parts.params, flops, settings,
                           executor, policy, faults=faults, world_size=transport.world_size)
    try:
        return Continuation(policy, resume_rank(transport, policy, options))
    except CheckpointError as err:
        raise ConfigError(str(err)) from None


def train_continuation(c: Any, parts: Any, settings: Any, membership: Any) -> Continuation:
    """`lowcomm train`'s policy and, with `resume`, its checkpoint checked against this run's
    options."""
    policy = checkpoint_policy(c)
    if not c.resume:
        return Continuation(policy)
    return Continuation(policy, resume_checkpoint(c, training_options(
        parts.algorithm, parts.params, settings, membership, policy)))


def train_rank_continuation(c: Any, parts: Any, settings: Any, membership: Any,
                            transport: Any) -> Continuation:
    """This rank's policy and, with `resume`, its part of the checkpoint of a distributed
    `lowcomm train` (every rank calls it: the ranks agree on rank 0's step)."""
    policy = checkpoint_policy(c)
    if not c.resume:
        return Continuation(policy)
    from lowcomm.runtime.distributed.checkpoint import resume_rank, train_options

    options = train_options(parts.algorithm, parts.params, settings, membership, policy,
                            world_size=transport.world_size)
    try:
        return Continuation(policy, resume_rank(transport, policy, options, protocol="train",
                                                others="rank"))
    except CheckpointError as err:
        raise ConfigError(str(err)) from None
