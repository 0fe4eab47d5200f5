"""The character transformer: shapes, causality, initial loss, pure vs bound gradients, FLOPs."""

import copy
import math

import pytest
import torch
from torch.func import functional_call
from torch.nn.utils import vector_to_parameters

from lowcomm.cost import count_flops
from lowcomm.models import block_of, char_transformer, init_params

V, T, W, L, H = 11, 8, 16, 2, 2


@pytest.fixture(scope="module")
def tiny():
    spec = char_transformer(V, seq_len=T, layers=L, width=W, heads=H)
    model, params = init_params(spec, seed=0)
    return spec, model, params


def _tokens(batch: int, *, seed: int = 1, vocab: int = V, length: int = T) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_shapes_names_and_parameter_count(tiny):
    spec, model, params = tiny
    assert model.logits(params, _tokens(3)).shape == (3, V, T)
    assert model.logits(params, _tokens(3, length=5)).shape == (3, V, 5)  # shorter is fine
    names = model.layout.names
    assert names[:2] == ("embed.tokens.weight", "embed.positions.weight")
    assert names[-4:] == ("head.norm.weight", "head.norm.bias", "head.out.weight", "head.out.bias")
    assert [block_of(n) for n in names] == [None] * 2 + [0] * 12 + [1] * 12 + [None] * 4
    per_block = 12 * W * W + 13 * W
    assert params.numel() == spec.num_params() == V * W + T * W + L * per_block + 2 * W + V * W + V
    assert char_transformer(65).num_params() == 421_697  # the documented default at V = 65


def test_block_of_other_names():
    assert block_of("blocks.13.mlp_in.weight") == 13
    assert block_of("head.out.weight") is None
    assert block_of("blocks.x.weight") is None and block_of("blocks") is None


def test_key_identifies_the_architecture():
    keys = {char_transformer(V).key, char_transformer(V, layers=3).key,
            char_transformer(V, heads=8).key, char_transformer(V, seq_len=32).key,
            char_transformer(V + 1).key, char_transformer(V, mlp_ratio=2).key}
    assert len(keys) == 6


def test_seeded_init_is_reproducible_and_seed_dependent():
    spec = char_transformer(V, seq_len=T, layers=L, width=W, heads=H)
    a, b, c = (init_params(spec, seed=s)[1] for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_changing_a_future_token_leaves_earlier_logits_unchanged(tiny):
    _, model, params = tiny
    x = _tokens(4)
    for t in range(T):
        changed = x.clone()
        changed[:, t] = (changed[:, t] + 1) % V
        before, after = model.logits(params, x), model.logits(params, changed)
        torch.testing.assert_close(after[:, :, :t], before[:, :, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(after[:, :, t], before[:, :, t])  # it does see its own input


def test_untrained_loss_is_near_log_vocab():
    spec = char_transformer(65)
    model, params = init_params(spec, seed=0)
    x = _tokens(8, vocab=65, length=64)
    y = _tokens(8, seed=2, vocab=65, length=64)
    assert model.loss(params, x, y).item() == pytest.approx(math.log(65), abs=0.05)


def test_functional_call_matches_the_module_forward(tiny):
    _, model, params = tiny
    moved = params + 0.1 * torch.randn(params.shape, generator=torch.Generator().manual_seed(7))
    module = copy.deepcopy(model.module)
    vector_to_parameters(moved, module.parameters())  # the plain module with those values
    x = _tokens(5)
    torch.testing.assert_close(model.logits(moved, x), module(x))
    torch.testing.assert_close(functional_call(model.module, model.layout.views(moved), (x,)),
                               module(x))


def test_flat_trainer_gradient_equals_autograd_on_functional_call(tiny):
    _, model, params = tiny
    x, y = _tokens(6), _tokens(6, seed=5)
    p = params.clone().requires_grad_(True)
    expected_loss = model.loss(p, x, y)
    (expected,) = torch.autograd.grad(expected_loss, p)
    trainer = model.trainer()
    trainer.bind(params.clone())
    loss, grad = trainer.loss_and_grad(x, y)
    torch.testing.assert_close(loss, expected_loss.detach())
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-7)
    assert all(g.abs().sum() > 0 for g in model.layout.views(grad).values())


def test_flops_equal_the_hand_count_of_matmuls_and_attention():
    # What the counter counts (lowcomm.cost.flops): matmuls and attention, 2 FLOPs per MAC; the
    # embedding lookup, LayerNorm, GELU, softmax and the loss count zero; causal masking is not
    # discounted (the T x T products are counted in full).
    b = 3
    spec = char_transformer(V, seq_len=T, layers=L, width=W, heads=H)
    linear = 2 * b * T * (L * (3 * W * W + W * W + 4 * W * W + 4 * W * W) + W * V)
    attention = 2 * 2 * b * T * T * W * L  # q k^T and att v, summed over heads
    forward = count_flops(spec.build, (b, T), input_dtype=torch.int64, kind="eval")
    assert forward == linear + attention
    train = count_flops(spec.build, (b, T), input_dtype=torch.int64, kind="train")
    # backward: weight and input gradient of every linear layer (the first layer's input is the
    # embedding, which needs a gradient); attention backward recomputes q k^T and does 4 more.
    assert train == forward + 2 * linear + 5 * attention // 2


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"vocab_size": 0}, "vocab_size must be >= 1; got 0"),
    ({"seq_len": 0}, "seq_len must be >= 1; got 0"),
    ({"layers": 0}, "layers must be >= 1; got 0"),
    ({"heads": 3}, "width must be divisible by heads=3; got 128"),
    ({"mlp_ratio": 0}, "mlp_ratio must be >= 1; got 0"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        char_transformer(**{"vocab_size": V, **kwargs})


def test_too_long_input_is_named(tiny):
    _, model, params = tiny
    with pytest.raises(ValueError, match=f"<= seq_len={T}; got {T + 1}"):
        model.logits(params, _tokens(1, length=T + 1))
