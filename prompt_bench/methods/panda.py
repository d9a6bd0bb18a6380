"""PANDA (Zhong et al., 2022/2024): prompt transfer through knowledge distillation.

Teacher: the PoT model (source prompt transferred, then tuned on the target task; a shared artefact,
trained once and never updated). teacher_mode=live (official): the teacher's prompt and head run on
every training batch through the same frozen backbone in train mode, dropout on, as the official
trainer's `source_model.train()` forward beside the student's; cached: its eval-mode logits on the
target training split, computed once (`prompt_bench.transfer.artefacts.teacher_logits_file`), a faster
approximation. Student: a freshly initialised prompt (deep P-tuning v2 prefixes by default, as in
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

import copy
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.nn import functional as F

from prompt_bench.backbones import BackboneAdapter
from prompt_bench.errors import ConfigError
from prompt_bench.export.metadata import HEAD_FILE
from prompt_bench.methods.base import PROMPT_FILE, MethodContext
from prompt_bench.methods.prompt_tuning import PromptTuning

KD_LOSSES = ("mse", "kl")
TEACHER_MODES = ("live", "cached")


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
    """A fresh student prompt distilled from the frozen PoT teacher (run live, or its cached logits)."""

    needs = frozenset({"teacher_model"})
    preferred_head = "pooler"  # BertPrefixForSequenceClassification's pooler + classifier (heads.PoolerHead)

    def __init__(
        self,
        beta: float = 0.1,
        kd_loss: str = "mse",
        temperature: float = 1.0,
        mse_batch_average: bool = True,
        adaptive_kd: bool = False,
        teacher_mode: str = "live",
        **prompt_tuning_options,
    ) -> None:
        super().__init__(**prompt_tuning_options)
        if kd_loss not in KD_LOSSES:
            raise ConfigError(f"method.module.kd_loss '{kd_loss}' is not one of {', '.join(KD_LOSSES)}.")
        if temperature <= 0:
            raise ConfigError(f"method.module.temperature must be > 0, got {temperature}.")
        if teacher_mode not in TEACHER_MODES:
            raise ConfigError(
                f"method.module.teacher_mode '{teacher_mode}' is not one of {', '.join(TEACHER_MODES)} "
                "(live: the teacher runs in train mode at every step, as the official code; cached: its eval-mode logits)."
            )
        self.kd_weight = 0.1 * beta
        self.adaptive_kd = adaptive_kd
        self.teacher_mode = teacher_mode
        self.needs = frozenset({"teacher_model" if teacher_mode == "live" else "teacher_logits"})
        if adaptive_kd:
            self.needs = self.needs | {"transferability"}
        self.transferability: float | None = None
        self.kd_kind = kd_loss
        self.temperature = temperature
        self.mse_batch_average = mse_batch_average
        self.prompt_options = dict(prompt_tuning_options)  # the teacher was trained with the same prompt settings
        self.teacher: PromptTuning | None = None
        self.teacher_head: nn.Module | None = None

    def prepare(self, context: MethodContext) -> None:
        teacher = context.extras.get("teacher_model" if self.teacher_mode == "live" else "teacher_logits")
        if teacher is None:
            raise ConfigError(
                "method=panda distils from a PoT teacher tuned on the target task, and none was given: "
                "choose a pair with transfer=<source>_to_<target>."
            )
        super().prepare(context)  # the student starts fresh, never from the source prompt
        if self.adaptive_kd:
            self.transferability = float(context.extras["transferability"])
            self.kd_weight *= max(self.transferability, 0.0)
        if self.teacher_mode == "cached":
            self.register_buffer("teacher_logits", load_file(str(teacher))["logits"].float(), persistent=False)
            return
        self.teacher, self.teacher_head = live_teacher(Path(teacher), self.prompt_options, context)

    def record_info(self) -> dict[str, float | None]:
        return {"kd_weight": self.kd_weight, "transferability_mss": self.transferability}

    def teacher_batch_logits(self, batch: dict[str, Tensor], backbone: BackboneAdapter | None) -> Tensor:
        """z_t (B, C) for this batch: the live teacher in train mode (dropout on), or the cached rows."""
        if self.teacher_mode == "cached":
            if "example_index" not in batch:
                raise ConfigError("PANDA's cached teacher needs batches with example_index to find its logits.")
            return self.teacher_logits[batch["example_index"]]
        if backbone is None:
            raise ConfigError("PANDA's live teacher runs through the backbone; extra_loss needs backbone=.")
        self.teacher.train()  # the official trainer calls source_model.train() before every teacher forward
        self.teacher_head.train()
        with torch.no_grad():  # the teacher never updates (official: its grads are zeroed every step)
            output = backbone(
                batch["input_ids"],
                batch["attention_mask"],
                prompt=self.teacher.prompt(batch),
                layer_prefixes=self.teacher.layer_prefixes(batch),
                token_type_ids=batch.get("token_type_ids"),
            )
            return self.teacher_head(output, batch, backbone).float()

    def extra_loss(
        self, batch: dict[str, Tensor], logits: Tensor, backbone: BackboneAdapter | None = None
    ) -> dict[str, Tensor]:
        teacher = self.teacher_batch_logits(batch, backbone).to(logits.device)
        kd = distillation_loss(logits.float(), teacher, self.kd_kind, self.temperature, self.mse_batch_average)
        return {"kd": self.kd_weight * kd}


def live_teacher(directory: Path, prompt_options: dict, context: MethodContext) -> tuple[PromptTuning, nn.Module]:
    """The PoT teacher from its artefact directory, frozen: its prompt (prompt.safetensors, the
    student's prompt settings) and a copy of the run's head with the teacher's trained weights
    (head.safetensors; a head without parameters is copied as it is)."""
    options = {key: value for key, value in prompt_options.items() if key not in ("init", "init_file")}
    teacher = PromptTuning(**options, init="file", init_file=str(directory / PROMPT_FILE))
    teacher.prepare(context)
    teacher.requires_grad_(False)
    if context.head is None:
        raise ConfigError("PANDA's live teacher copies the run's head; the builder passes it as context.head.")
    head = copy.deepcopy(context.head)
    head_file = directory / HEAD_FILE
    trained = [name for name, _ in head.named_parameters()]
    if trained:
        if not head_file.is_file():
            raise ConfigError(
                f"the PoT teacher in {directory} saved no {HEAD_FILE}, but head '{head.name}' has trained "
                "weights; remake the teacher artefact (delete that directory) or use method.module.teacher_mode=cached."
            )
        tensors = load_file(str(head_file))
        if sorted(tensors) != sorted(trained):
            raise ConfigError(
                f"{head_file} holds {sorted(tensors)}, but head '{head.name}' has {sorted(trained)}; "
                "the teacher was trained with another head."
            )
        head.load_state_dict(tensors, strict=False)
    head.requires_grad_(False)
    return teacher, head.to(context.adapter.input_embeddings.weight.device)
