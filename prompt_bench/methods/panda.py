"""PANDA (Zhong et al., 2022/2024): prompt transfer through knowledge distillation.

Teacher: the PoT model (source prompt transferred, then tuned on the target task), whose logits on
the target training split are a shared artefact (`prompt_bench.transfer.artefacts.teacher_logits_file`) and
never change. Student: a freshly initialised prompt (deep P-tuning v2 prefixes by default, as in
the official code) trained with

    L = CE(z_s, y) + w · KD(z_s, z_t),   w = 0.1 · beta   (official: beta = 0.1, so w = 0.01)

KD is the official logit MSE, `F.mse_loss` (mean over elements) divided once more by the batch
size B (`mse_batch_average=true`, faithful; false drops the extra 1/B), or the temperature-scaled
KL `T² · KL(softmax(z_t/T) || softmax(z_s/T))` (batch mean) with `kd_loss=kl`.

adaptive_kd=true scales the weight by the pair's transferability, as the paper proposes (the
official code only exposes the fixed beta): w = 0.1 · beta · max(MSS(s, t), 0), where MSS is the
model stimulation similarity between the source prompt and the target's own prompt (prompt tuning
on the target with the same settings, a shared artefact) on the target's training inputs. A pair
whose prompts stimulate the backbone alike keeps the full weight; an unrelated one distils less.
"""

from __future__ import annotations

from safetensors.torch import load_file
from torch import Tensor
from torch.nn import functional as F

from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.prompt_tuning import PromptTuning

KD_LOSSES = ("mse", "kl")


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    kind: str = "mse",
    temperature: float = 1.0,
    mse_batch_average: bool = True,
) -> Tensor:
    """KD(z_s, z_t) for (B, C) logits, before the weight w (see the module docstring)."""
    if kind == "mse":
        mse = F.mse_loss(student_logits, teacher_logits)
        return mse / student_logits.shape[0] if mse_batch_average else mse
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_probs = F.softmax(teacher_logits / temperature, dim=-1)
    return temperature**2 * F.kl_div(log_student, teacher_probs, reduction="batchmean")


class PANDA(PromptTuning):
    """A fresh student prompt distilled from the (frozen, cached) PoT teacher's target logits."""

    needs = frozenset({"teacher_logits"})
    preferred_head = "pooler"  # BertPrefixForSequenceClassification's pooler + classifier (heads.PoolerHead)

    def __init__(
        self,
        beta: float = 0.1,
        kd_loss: str = "mse",
        temperature: float = 1.0,
        mse_batch_average: bool = True,
        adaptive_kd: bool = False,
        **prompt_tuning_options,
    ) -> None:
        super().__init__(**prompt_tuning_options)
        if kd_loss not in KD_LOSSES:
            raise ConfigError(f"method.module.kd_loss '{kd_loss}' is not one of {', '.join(KD_LOSSES)}.")
        if temperature <= 0:
            raise ConfigError(f"method.module.temperature must be > 0, got {temperature}.")
        self.kd_weight = 0.1 * beta
        self.adaptive_kd = adaptive_kd
        if adaptive_kd:
            self.needs = self.needs | {"transferability"}
        self.transferability: float | None = None
        self.kd_kind = kd_loss
        self.temperature = temperature
        self.mse_batch_average = mse_batch_average

    def prepare(self, context: MethodContext) -> None:
        teacher_file = context.extras.get("teacher_logits")
        if teacher_file is None:
            raise ConfigError(
                "method=panda distils from a PoT teacher tuned on the target task, and none was given: "
                "choose a pair with transfer=<source>_to_<target>."
            )
        super().prepare(context)  # the student starts fresh, never from the source prompt
        if self.adaptive_kd:
            self.transferability = float(context.extras["transferability"])
            self.kd_weight *= max(self.transferability, 0.0)
        self.register_buffer("teacher_logits", load_file(str(teacher_file))["logits"].float(), persistent=False)

    def record_info(self) -> dict[str, float | None]:
        return {"kd_weight": self.kd_weight, "transferability_mss": self.transferability}

    def extra_loss(self, batch: dict[str, Tensor], logits: Tensor) -> dict[str, Tensor]:
        if "example_index" not in batch:
            raise ConfigError("PANDA needs batches with example_index to find the teacher's logits.")
        teacher = self.teacher_logits[batch["example_index"]].to(logits.device)
        kd = distillation_loss(logits.float(), teacher, self.kd_kind, self.temperature, self.mse_batch_average)
        return {"kd": self.kd_weight * kd}
