"""The upload screen every registered star algorithm declares: its own honest uploads pass; every
corruption is refused with its reason, and no check leaves a hole for another algorithm."""

import dataclasses
import re

import numpy as np
import pytest
import torch
from tests.conftest import make_model

from lowcomm.algorithms import ClientTask
from lowcomm.algorithms.screen import Count, UploadForm, UploadRejectedError
from lowcomm.cli.build import build_algorithm
from lowcomm.cli.config import ALGORITHMS, K_STEPS, RunConfig
from lowcomm.compress import Codec, fp32
from lowcomm.core import Payload, deserialize, serialize, torch_generator
from lowcomm.runtime.faults import corrupt


def _algorithm(name: str, model):
    config = RunConfig(algorithm=name, local_steps=2 if name in K_STEPS else None,
                       uplink="topk:0.2" if name == "ef21" else "fp32")
    return build_algorithm(config, model, num_clients=10)


def _honest_upload(algorithm, params, client: int = 3) -> Payload:
    x, y = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(client)), \
        torch.arange(12) % 10
    state = algorithm.init(params)
    task = ClientTask(client, 1, x, y, torch_generator(0, round=1, client=client, purpose="t"))
    out = algorithm.client_update(algorithm.server_message(state), task)
    return deserialize(serialize(out.payload))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_registered_algorithm_admits_its_own_uploads_and_refuses_corrupted_ones(name):
    _, model, params = make_model("logreg")
    algorithm = _algorithm(name, model)
    assert algorithm.upload_form is not None  # every star algorithm declares its uploads
    honest = _honest_upload(algorithm, params)
    algorithm.upload_form.check(honest)
    algorithm.server_update(algorithm.init(params), [honest])  # and the server can use it
    data = serialize(honest)
    for corruption, reason in (("nan", "non-finite"), ("shape", "malformed"),
                               ("field", "malformed"), ("oversize", "malformed")):
        with pytest.raises(UploadRejectedError) as err:
            algorithm.upload_form.check(deserialize(corrupt(data, corruption)))
        assert err.value.reason == reason, (corruption, err.value)


def test_counts_are_checked_for_dtype_shape_and_bounds():
    _, model, _ = make_model("logreg")
    form = UploadForm(fp32(), model.layout)
    vector = {"fp32/values": np.zeros(model.layout.size, dtype=np.float32)}
    form.check(Payload({**vector, "num_samples": np.array([5], dtype=np.int64)}))
    for counts, why in (({}, "missing"),
                        ({"num_samples": np.array([0], dtype=np.int64)}, "must be in [1, inf)"),
                        ({"num_samples": np.array([5], dtype=np.int32)}, "must be int64 [1]"),
                        ({"num_samples": np.array([5, 5], dtype=np.int64)}, "int64 [1]")):
        with pytest.raises(UploadRejectedError, match="malformed.*" + re.escape(why)):
            form.check(Payload({**vector, **counts}))
    bounded = UploadForm(fp32(), model.layout, counts=(Count("client", 0, 10),))
    with pytest.raises(UploadRejectedError, match=r"'client' is 10; it must be in \[0, 10\)"):
        bounded.check(Payload({**vector, "client": np.array([10], dtype=np.int64)}))


def test_packed_vectors_must_be_one_of_the_declared_alternatives():
    _, model, _ = make_model("logreg")
    d = model.layout.size
    form = UploadForm(fp32(), model.layout, (("g",), ("dx",)), ())
    zeros = np.zeros(d, dtype=np.float32)
    form.check(Payload({"g:fp32/values": zeros}))
    form.check(Payload({"dx:fp32/values": zeros}))
    for arrays in ({"g:fp32/values": zeros, "dx:fp32/values": zeros},  # both at once
                   {"c:fp32/values": zeros},  # a vector nobody sends
                   {"fp32/values": zeros}):  # unpacked
        with pytest.raises(UploadRejectedError, match="malformed: the upload holds vectors"):
            form.check(Payload(arrays))
    with pytest.raises(UploadRejectedError, match="unexpected fields"):
        form.check(Payload({"g:fp32/values": zeros, "stray": zeros}))


def _lax(decoded: torch.Tensor) -> Codec:
    """A codec whose decoder returns `decoded` whatever it is sent (no checks of its own)."""
    def decode(payload, layout):
        payload["lax/values"]
        return decoded

    return dataclasses.replace(fp32(), name="lax", decode=decode)


def test_decoded_vectors_must_be_float32_of_the_layouts_size():
    _, model, _ = make_model("logreg")
    d = model.layout.size
    sent = Payload({"lax/values": np.zeros(3, dtype=np.float32)})
    UploadForm(_lax(torch.zeros(d)), model.layout, counts=()).check(sent)
    for decoded, reason in ((torch.zeros(d - 1), "wrong-shape"),
                            (torch.zeros(1, d), "wrong-shape"),
                            (torch.zeros(d, dtype=torch.float64), "wrong-shape"),
                            (torch.full((d,), float("inf")), "non-finite")):
        with pytest.raises(UploadRejectedError) as err:
            UploadForm(_lax(decoded), model.layout, counts=()).check(sent)
        assert err.value.reason == reason


def test_a_decoder_crashing_on_bad_indices_is_a_rejection_not_a_crash():
    _, model, _ = make_model("logreg")

    def decode(payload, layout):
        return torch.zeros(layout.size)[torch.from_numpy(payload["bad/idx"].astype(np.int64))]

    codec = dataclasses.replace(fp32(), name="bad", decode=decode)
    huge = Payload({"bad/idx": np.array([10**9], dtype=np.int64)})
    with pytest.raises(UploadRejectedError, match="malformed"):
        UploadForm(codec, model.layout, counts=()).check(huge)
