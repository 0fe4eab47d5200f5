import os

import pytest
import torch

from lowcomm.runtime.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointPolicy,
    held,
    load,
    save,
    save_round,
)
from lowcomm.runtime.state import ClientStateStore


def _ckpt(t: int, seed: int = 0) -> Checkpoint:
    return Checkpoint(t, {"params": torch.arange(4.0) * t}, None, [], [], None,
                      {"seed": seed, "shape": (2, 3)}, seed)


def test_round_trip_and_atomic_tmp_ignored(tmp_path):
    save(tmp_path / "last.ckpt", _ckpt(3))
    (tmp_path / "last.ckpt.tmp").write_bytes(b"half a write")  # an interrupted later write
    got = load(tmp_path, options={"seed": 0, "shape": (2, 3)})  # tuples compare as saved lists
    assert got.next_round == 3 and torch.equal(got.state["params"], torch.arange(4.0) * 3)
    assert got.source == tmp_path / "last.ckpt" and got.seed == 0


def test_truncated_or_other_options_refused(tmp_path):
    path = save(tmp_path / "last.ckpt", _ckpt(2))
    with pytest.raises(CheckpointError, match=r"last\.ckpt was written by a run with other "
                       r"options \(seed: 0 there, 1 here\)"):
        load(path, options={"seed": 1, "shape": (2, 3)})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load(path)


def test_keep_rotates_the_older_files(tmp_path):
    for t in (1, 2, 3):
        save(tmp_path / "last.ckpt", _ckpt(t), keep=2)
    assert [load(tmp_path / n).next_round for n in ("last.ckpt", "last.ckpt.1")] == [3, 2]
    assert not (tmp_path / "last.ckpt.2").exists()


class _KilledError(Exception):
    pass


def test_a_write_killed_during_the_rotation_leaves_the_newest_file_in_place(tmp_path,
                                                                            monkeypatch):
    path = tmp_path / "last.ckpt"
    for t in (1, 2):
        save(path, _ckpt(t), keep=3)
    real_replace = os.replace

    def killed_at_the_final_rename(src, dst):
        if str(src).endswith("last.ckpt.tmp"):
            raise _KilledError
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_the_final_rename)
    with pytest.raises(_KilledError):
        save(path, _ckpt(3), keep=3)
    monkeypatch.undo()
    assert [c.next_round for c in held(path)] == [2, 2, 1]  # last.ckpt never went missing


def test_held_lists_newest_first_even_without_the_newest_file(tmp_path):
    path = tmp_path / "rank1.ckpt"
    for t in range(1, 13):
        save(path, _ckpt(t), keep=11)
    assert [c.next_round for c in held(path)] == list(range(12, 1, -1))  # .10 after .9
    path.unlink()
    assert [c.next_round for c in held(path)] == list(range(11, 1, -1))
    assert held(tmp_path / "none.ckpt") == []


def test_client_store_snapshot_restore():
    store = ClientStateStore({"c": (2,)})
    store.put(7, {"c": torch.tensor([1.0, 2.0])})
    store.put(3, {"c": torch.tensor([5.0, 6.0])})
    other = ClientStateStore({"c": (2,)})
    other.restore(store.snapshot())
    assert other.clients() == [7, 3] and torch.equal(other.get(3)["c"], torch.tensor([5.0, 6.0]))


def test_save_round_builds_the_checkpoint_only_when_it_is_due(tmp_path):
    built = []

    def build():
        built.append(True)
        return Checkpoint(4, {"w": torch.zeros(2)}, None, [], [], None, {}, 0)

    policy = CheckpointPolicy(tmp_path, every=3)
    assert save_round(policy, 2, build, last=False) is None and built == []  # not due: no copy
    assert save_round(None, 3, build, last=True) is None and built == []
    assert save_round(policy, 3, build, last=False) == policy.path and built == [True]
