"""Model FLOPs utilisation: the FLOPs a prompt-tuning step must do, over the device's bf16 peak.

FLOPs per step, for a frozen body of N matmul weights (every nn.Linear weight in the layers the
prompt runs through; embeddings, pooler and LM heads excluded), n_layers layers of width d, and
T = B·S tokens (S = prompt + input positions):
    forward            2·N·T + 4·n_layers·S·d·T   (weight matmuls; QKᵀ and AV)
    backward to input  2·N·T + 8·n_layers·S·d·T   (weight matmuls: the input gradient only, the frozen
                                                   weights get none; attention: both operands)
    total              4·N·T + 12·n_layers·S·d·T
The prompt (the only trained tensor) adds no matmul FLOPs. Training every weight would be the usual
6·N·T; a prompt tuner's ceiling is 4·N·T because the weight gradients are never formed.
MFU = FLOPs per step × steps per second / peak. Peaks are dense bf16 tensor-core FLOP/s from the
vendors' datasheets; pass --peak-tflops for a device not in the table (or a CPU).
"""

from __future__ import annotations

from torch import nn

# Dense bf16 TFLOP/s by a substring of torch.cuda.get_device_name(); first match wins.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM / HBM3
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a device by name, or None when the table does not know it."""
    for key, tflops in BF16_PEAK_TFLOPS:
        if key in device_name:
            return tflops
    return None


def matmul_weights(body: nn.Module) -> int:
    """N: elements of every nn.Linear weight in `body`, poolers excluded (they see one token)."""
    return sum(
        module.weight.numel()
        for name, module in body.named_modules()
        if isinstance(module, nn.Linear) and "pooler" not in name
    )


def flops_per_step(matmul_params: int, n_layers: int, width: int, batch_size: int, positions: int) -> float:
    """4·N·T + 12·n_layers·S·d·T with T = B·S (see the module docstring)."""
    tokens = batch_size * positions
    return 4.0 * matmul_params * tokens + 12.0 * n_layers * positions * width * tokens


def body_shape(config) -> tuple[int, int]:
    """(n_layers, d) of the body from a Hugging Face config (T5, GPT-2 map their own names)."""
    return int(config.num_hidden_layers), int(config.hidden_size)


def mfu(flops: float, steps_per_second: float, peak: float | None) -> float | None:
    """Achieved FLOP/s over the peak (TFLOP/s), or None without a peak."""
    if peak is None:
        return None
    return flops * steps_per_second / (peak * 1e12)
