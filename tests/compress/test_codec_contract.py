"""The contract every codec must pass: exact bytes and a faithful round trip through the wire."""

import numpy as np
import pytest
import torch

from lowcomm.compress import (
    bf16,
    chain,
    dgc,
    ef21,
    error_feedback,
    fp4,
    fp16,
    fp32,
    huffman_stage,
    kmeans,
    kmeans_stage,
    powersgd,
    qsgd,
    randk,
    scaled_sign,
    terngrad,
    topk,
)
from lowcomm.core import Layout, Payload, deserialize, serialize

CODECS = [
    pytest.param(fp32, id="fp32"),
    pytest.param(fp16, id="fp16"),
    pytest.param(bf16, id="bf16"),
    pytest.param(fp4, id="fp4"),
    pytest.param(lambda: fp4(block_size=16), id="fp4-block16"),
    pytest.param(lambda: qsgd(1), id="qsgd-s1"),
    pytest.param(lambda: qsgd(15), id="qsgd-s15"),
    pytest.param(lambda: qsgd(255, bucket_size=16), id="qsgd-s255-bucket16"),
    pytest.param(terngrad, id="terngrad"),
    pytest.param(scaled_sign, id="scaled_sign"),
    *[pytest.param(lambda e=e: topk(0.2, index_encoding=e), id=f"topk-{e}")
      for e in ("auto", "raw", "bitmap", "gamma", "rice")],
    pytest.param(lambda: topk(0.1, per_layer=True), id="topk-per-layer"),
    pytest.param(lambda: randk(0.3), id="randk"),
    pytest.param(lambda: randk(0.3, unbiased=False), id="randk-biased"),
    pytest.param(lambda: kmeans(3), id="kmeans"),
    pytest.param(lambda: kmeans(16, per_layer=False), id="kmeans-global"),
    pytest.param(lambda: chain(topk(0.2), kmeans_stage(3), huffman_stage()), id="fedzip"),
    pytest.param(lambda: chain(fp32(), kmeans_stage(4, per_layer=True), huffman_stage()),
                 id="kmeans-huffman"),
    pytest.param(lambda: powersgd(1), id="powersgd-r1"),
    pytest.param(lambda: powersgd(2, warm_start=False), id="powersgd-r2-cold"),
    pytest.param(lambda: error_feedback(topk(0.2)), id="topk-ef"),
    pytest.param(lambda: error_feedback(scaled_sign()), id="sign-ef"),
    pytest.param(lambda: dgc(topk(0.2), momentum=0.9), id="topk-dgc"),
    pytest.param(lambda: ef21(topk(0.2)), id="topk-ef21"),
    pytest.param(lambda: ef21(scaled_sign()), id="sign-ef21"),
]

LAYOUTS = {
    "d1": {"w": (1,)},
    "d2": {"w": (2,)},
    "d7": {"w": (7,)},
    "d1000": {"w": (1000,)},
    "matrix": {"w": (3, 4)},
    "multi": {"a": (20, 30), "b": (30,), "c": (10, 20), "d": (10,)},
}


@pytest.mark.parametrize("make", CODECS)
@pytest.mark.parametrize("shapes", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_bytes_and_round_trip(make, shapes):
    codec = make()
    layout = Layout.from_shapes(shapes)
    d = layout.size
    state = codec.init(layout)
    for step in range(3 if codec.stateful else 1):  # thread the state through several encodes
        x = torch.randn(d, generator=torch.Generator().manual_seed(100 * d + step))
        x_before = x.clone()
        payload, state = codec.encode(x, state, torch.Generator().manual_seed(step))
        assert torch.equal(x, x_before)  # encode never writes into its input
        data = serialize(payload)
        assert len(data) == payload.nbytes
        decoded = codec.decode(deserialize(data), layout)
        assert torch.equal(decoded, codec.decode(payload, layout))
        assert decoded.shape == (d,) and decoded.dtype == torch.float32
        space = codec.name.split("+")[0]
        assert all(name.startswith(f"{space}/") for name in payload), list(payload)


@pytest.mark.parametrize("make", CODECS)
def test_encoding_is_a_function_of_input_state_and_generator(make):
    codec = make()
    layout = Layout.from_shapes(LAYOUTS["multi"])
    x = torch.randn(layout.size, generator=torch.Generator().manual_seed(3))
    first, _ = codec.encode(x, codec.init(layout), torch.Generator().manual_seed(9))
    again, _ = codec.encode(x, codec.init(layout), torch.Generator().manual_seed(9))
    assert serialize(first) == serialize(again)


@pytest.mark.parametrize("make", CODECS)
def test_extra_arrays_such_as_the_sample_count_do_not_change_decoding(make):
    codec = make()
    layout = Layout.from_shapes(LAYOUTS["multi"])
    x = torch.randn(layout.size, generator=torch.Generator().manual_seed(4))
    payload, _ = codec.encode(x, codec.init(layout), torch.Generator().manual_seed(0))
    merged = payload.merged({"num_samples": np.array([12], dtype=np.int64)})
    assert torch.equal(codec.decode(merged, layout), codec.decode(payload, layout))


@pytest.mark.parametrize("make", CODECS)
def test_decoding_against_a_layout_of_another_size_is_refused(make):
    codec = make()
    layout = Layout.from_shapes(LAYOUTS["multi"])
    x = torch.randn(layout.size, generator=torch.Generator().manual_seed(5))
    payload, _ = codec.encode(x, codec.init(layout), torch.Generator().manual_seed(0))
    # Sparse payloads do not carry d (only k values and positions), so the other layout differs
    # enough that k differs too; dense payloads are checked against d exactly.
    other = Layout.from_shapes({"a": (20, 30), "b": (30,)})
    with pytest.raises(ValueError):
        codec.decode(payload, other)


def test_fp32_is_lossless_and_costs_four_bytes_per_parameter():
    codec = fp32()
    x = torch.randn(100)
    payload, _ = codec.encode(x, None, None)
    assert torch.equal(codec.decode(payload, Layout.from_shapes({"w": (100,)})), x)
    with pytest.raises(ValueError, match="layout"):
        codec.decode(payload, Layout.from_shapes({"w": (99,)}))
    header = payload.nbytes - 4 * 100
    assert 0 < header < 32


def test_the_payload_sizes_quoted_in_docs_costs():
    payload, _ = fp32().encode(torch.zeros(199_210), None, None)  # the 2NN of McMahan et al.
    assert payload.nbytes == 796_869
    assert payload.merged({"num_samples": np.array([1], dtype=np.int64)}).nbytes == 796_895


def test_a_payload_of_another_codec_is_refused():
    with pytest.raises(ValueError, match="not a fp32 payload"):
        fp32().decode(Payload({"topk/values": torch.zeros(3)}), Layout.from_shapes({"w": (3,)}))
