"""Membership schedules for elastic DiLoCo: who is live in each outer step.

Membership changes only at outer-step boundaries (a step `t` with `t % inner_steps == 0`,
0 < t < steps). A schedule maps such a step to its events, applied in order before that
outer step's inner steps begin:

- `"join"`: a new worker enters. It gets the next unused worker id (ids are never reused),
  so its data shard and its random streams `(seed, t, w, ...)` are its own.
- `"leave W"`: worker W announces that it leaves; it takes part in no later step.

Data shards are keyed by worker id: worker w always samples shard w, a leaver's shard is no
longer sampled, and a joiner samples its own fresh shard (the shard count is therefore the
number of ids ever used, `total_ids`). The all-reduce averages over the live members only.
The outer optimizer state (Nesterov momentum) is held identically by every replica, so a
joiner receives it together with the global parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Membership:
    """The live worker ids of every outer step, from an initial count and a schedule."""

    initial_workers: int
    inner_steps: int
    steps: int
    events: tuple[tuple[int, str, int | None], ...]  # (step, "join"|"leave", worker or None)

    def live_at(self, step: int) -> tuple[int, ...]:
        """The worker ids live during inner step `step` (0-based)."""
        live = list(range(self.initial_workers))
        next_id = self.initial_workers
        for at, kind, worker in self.events:
            if at > step:
                break
            if kind == "join":
                live.append(next_id)
                next_id += 1
            else:
                live.remove(worker)
        return tuple(live)

    @property
    def total_ids(self) -> int:
        """The number of worker ids ever used (= the number of data shards)."""
        return self.initial_workers + sum(kind == "join" for _, kind, _ in self.events)

    def changes_at(self, step: int) -> tuple[tuple[str, int], ...]:
        """The (kind, worker id) changes applied at boundary `step`."""
        before = set(self.live_at(step - 1)) if step > 0 else set(range(self.initial_workers))
        after = set(self.live_at(step))
        return tuple([("leave", w) for w in sorted(before - after)] +
                     [("join", w) for w in sorted(after - before)])


def parse_membership(schedule: Mapping[int, str | list[str]] | None, *, initial_workers: int,
                     inner_steps: int, steps: int) -> Membership:
    """Check and parse a schedule such as `{20: "join", 40: ["leave 0", "join"]}`."""
    if not isinstance(initial_workers, int) or initial_workers < 1:
        raise ValueError(f"initial_workers must be an integer >= 1; got {initial_workers!r}")
    if not isinstance(inner_steps, int) or inner_steps < 1:
        raise ValueError(f"inner_steps must be an integer >= 1; got {inner_steps!r}")
    events: list[tuple[int, str, int | None]] = []
    live = set(range(initial_workers))
    next_id = initial_workers
    for step in sorted((schedule or {}).keys()):
        if not isinstance(step, int) or not 0 < step < steps or step % inner_steps:
            raise ValueError(f"membership step {step!r} is not an outer-step boundary: it "
                             f"must be a multiple of inner_steps={inner_steps} in (0, {steps})")
        entries = schedule[step]
        for entry in [entries] if isinstance(entries, str) else list(entries):
            words = str(entry).split()
            if words == ["join"]:
                events.append((step, "join", None))
                live.add(next_id)
                next_id += 1
            elif len(words) == 2 and words[0] == "leave" and words[1].isdigit():
                worker = int(words[1])
                if worker not in live:
                    raise ValueError(f"membership at step {step}: {entry!r} names worker "
                                     f"{worker}, which is not live then (live: {sorted(live)})")
                live.remove(worker)
                events.append((step, "leave", worker))
            else:
                raise ValueError(f"membership event {entry!r} at step {step} must be 'join' "
                                 "or 'leave W'")
        if not live:
            raise ValueError(f"membership at step {step} leaves no live worker")
    return Membership(initial_workers, inner_steps, steps, tuple(events))
