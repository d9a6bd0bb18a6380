"""T5XAdafactor against updates computed by hand from t5x's formulas (t5x/adafactor.py)."""

from __future__ import annotations

import math

import pytest
import torch

from prompt_bench.optimizers import T5XAdafactor

LR, WD = 0.3, 1.0e-5


def one_step(param: torch.Tensor, grad: torch.Tensor, **options) -> tuple[torch.Tensor, T5XAdafactor]:
    parameter = torch.nn.Parameter(param.clone())
    optimizer = T5XAdafactor([parameter], **options)
    parameter.grad = grad.clone()
    optimizer.step()
    return parameter.detach(), optimizer


def test_beta2_follows_t5x_decay_schedule():
    # t5x _decay_rate_pow: 1 - (step + 1)^-0.8; the first update of a fresh count has beta2 = 0
    assert T5XAdafactor.beta2(0, 0.8) == 0.0
    assert T5XAdafactor.beta2(1, 0.8) == pytest.approx(1 - 2**-0.8)  # 0.42565
    assert T5XAdafactor.beta2(1_100_000, 0.8) == pytest.approx(1 - 1_100_001**-0.8)  # 0.9999855


def test_unfactored_two_steps_with_clipping_match_hand_computation():
    p0 = torch.tensor([[1.0, -2.0, 0.5], [0.25, 0.0, 3.0]])
    g1 = torch.tensor([[0.1, -0.2, 0.3], [0.1, 0.1, -0.1]])
    g2 = torch.tensor([[1.0, 0.1, -2.0], [0.5, 0.0, 1.0]])
    parameter = torch.nn.Parameter(p0.clone())
    optimizer = T5XAdafactor([parameter], lr=LR, weight_decay_rate=WD, initial_step=0)
    parameter.grad = g1.clone()
    optimizer.step()
    # step 0: beta2 = 0, v = g² (+1e-30), y = sign(g): RMS 1, so no clipping
    flat_p0, flat_g1, flat_g2 = p0.flatten().tolist(), g1.flatten().tolist(), g2.flatten().tolist()
    p1 = [(1 - WD) * p - LR * math.copysign(1.0, g) for p, g in zip(flat_p0, flat_g1)]
    assert parameter.detach().flatten().tolist() == pytest.approx(p1, rel=1e-6)
    assert "v_row" not in optimizer.state[parameter]  # 2 x 3 is below 128: one full second moment

    parameter.grad = g2.clone()
    optimizer.step()
    beta2 = 1 - 2**-0.8
    v = [beta2 * (a * a + 1e-30) + (1 - beta2) * (b * b + 1e-30) for a, b in zip(flat_g1, flat_g2)]
    y = [b / math.sqrt(vi) for b, vi in zip(flat_g2, v)]
    rms = math.sqrt(sum(x * x for x in y) / len(y))
    assert rms > 1.0  # this step is clipped
    y = [x / rms for x in y]
    p2 = [(1 - WD) * p - LR * x for p, x in zip(p1, y)]
    assert parameter.detach().flatten().tolist() == pytest.approx(p2, rel=1e-5)


def test_step_counter_starts_at_the_checkpoint_step():
    p0 = torch.tensor([[2.0, -1.0], [0.0, 4.0]])
    g = torch.tensor([[0.5, -0.5], [0.25, 1.0]])
    new, optimizer = one_step(p0, g, initial_step=1_100_000, weight_decay_rate=WD)
    # beta2 ~ 1 - 1.45e-5: v = 1_100_001^-0.8 · g², y = sign(g) / sqrt(1_100_001^-0.8), clipped to RMS 1
    mixing = 1_100_001**-0.8
    state = optimizer.state[next(iter(optimizer.state))]
    assert state["v"].flatten().tolist() == pytest.approx([mixing * x * x for x in g.flatten().tolist()], rel=1e-5)
    assert state["step"] == 1_100_001
    expected = [(1 - WD) * p - LR * math.copysign(1.0, x) for p, x in zip(p0.flatten().tolist(), g.flatten().tolist())]
    assert new.flatten().tolist() == pytest.approx(expected, rel=1e-5)


def test_weight_decay_is_a_factor_per_step_not_scaled_by_lr():
    p0 = torch.tensor([[1.0, -3.0], [2.0, 0.5]])
    for lr in (0.3, 1.0):  # a zero gradient leaves only the decay: p <- (1 - 1e-5) p whatever the lr
        new, _ = one_step(p0, torch.zeros_like(p0), lr=lr, weight_decay_rate=WD)
        assert new.flatten().tolist() == pytest.approx([(1 - WD) * p for p in p0.flatten().tolist()], rel=1e-7)


def test_factored_128x128_matches_hand_computation():
    # g = 1 on the diagonal 64 x 64 blocks, 2 off them: every row and column mean of g² is (1 + 4) / 2 = 2.5,
    # so R / mean(R) = 1 and y = g / sqrt(2.5), whose RMS is 1 (no clipping). Unfactored, y would be sign(g) = 1.
    block = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    g = block.repeat_interleave(64, dim=0).repeat_interleave(64, dim=1)
    p0 = torch.full((128, 128), 0.5)
    new, optimizer = one_step(p0, g, weight_decay_rate=WD, initial_step=0)
    state = optimizer.state[next(iter(optimizer.state))]
    assert state["v_row"].shape == (128,) and state["v_col"].shape == (128,) and "v" not in state
    assert state["v_row"].tolist() == pytest.approx([2.5] * 128)
    expected_low = (1 - WD) * 0.5 - LR * 1.0 / math.sqrt(2.5)
    expected_high = (1 - WD) * 0.5 - LR * 2.0 / math.sqrt(2.5)
    assert new[0, 0].item() == pytest.approx(expected_low, rel=1e-5)
    assert new[0, 127].item() == pytest.approx(expected_high, rel=1e-5)
    assert new[127, 127].item() == pytest.approx(expected_low, rel=1e-5)


@pytest.mark.parametrize(
    ("shape", "factored"),
    [((100, 768), False), ((127, 4096), False), ((128, 128), True), ((768, 3072), True), ((768,), False)],
)
def test_factoring_needs_two_dims_of_at_least_128(shape, factored):
    # a 100-token prompt is never factored (t5x min_dim_size_to_factor=128); transformers' Adafactor factors it
    assert (T5XAdafactor.factored_dims(shape, 128) is not None) == factored


def test_factored_rows_are_the_smaller_dim():
    p0 = torch.zeros(256, 128)
    g = torch.arange(1.0, 256 * 128 + 1).reshape(256, 128) / 1000
    _, optimizer = one_step(p0, g, initial_step=0)
    state = optimizer.state[next(iter(optimizer.state))]
    # rows = dim 1 (128), columns = dim 0 (256): v_row averages over dim 0, v_col over dim 1
    assert state["v_row"].shape == (128,) and state["v_col"].shape == (256,)
    assert state["v_row"].tolist() == pytest.approx((g * g + 1e-30).mean(dim=0).tolist(), rel=1e-5)


def test_bad_values_are_refused_with_a_sentence():
    with pytest.raises(ValueError, match="weight_decay_rate must be in"):
        T5XAdafactor([torch.nn.Parameter(torch.zeros(2))], weight_decay_rate=1.5)
    with pytest.raises(ValueError, match="initial_step must be >= 0"):
        T5XAdafactor([torch.nn.Parameter(torch.zeros(2))], initial_step=-1)
