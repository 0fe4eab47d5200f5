import pytest
import torch

from lowcomm.runtime.checkpoint import Checkpoint, CheckpointError, load, options_hash, save
from lowcomm.runtime.state import ClientStateStore


def _ckpt(t: int) -> Checkpoint:
    return Checkpoint(t, {"params": torch.arange(4.0) * t}, None, [], [], None)


def test_round_trip_and_atomic_tmp_ignored(tmp_path):
    h = options_hash({"seed": 0})
    save(tmp_path / "last.ckpt", _ckpt(3), options=h)
    (tmp_path / "last.ckpt.tmp").write_bytes(b"half a write")  # an interrupted later write
    got = load(tmp_path, options=h)
    assert got.next_round == 3 and torch.equal(got.state["params"], torch.arange(4.0) * 3)


def test_truncated_or_other_options_refused(tmp_path):
    h = options_hash({"seed": 0})
    path = save(tmp_path / "last.ckpt", _ckpt(2), options=h)
    with pytest.raises(CheckpointError, match="other options"):
        load(path, options=options_hash({"seed": 1}))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load(path, options=h)


def test_client_store_snapshot_restore():
    store = ClientStateStore({"c": (2,)})
    store.put(7, {"c": torch.tensor([1.0, 2.0])})
    store.put(3, {"c": torch.tensor([5.0, 6.0])})
    other = ClientStateStore({"c": (2,)})
    other.restore(store.snapshot())
    assert other.clients() == [7, 3] and torch.equal(other.get(3)["c"], torch.tensor([5.0, 6.0]))
