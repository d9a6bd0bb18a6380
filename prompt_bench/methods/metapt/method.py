"""MetaPT and PPT downstream: ordinary prompt tuning whose P starts as the init artefact's prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.prompt_tuning import PromptTuning


class MetaInitPromptTuning(PromptTuning):
    """Prompt tuning (Lester et al., 2021) from a pre-trained init prompt (method=metapt, method=ppt).

    The init is a shared artefact made once per content key by `pretrain.meta_init_file`
    (MetaPT: Prompt-MAML over clustered auxiliary tasks; PPT: multi-task training on the same
    tasks), handed in as `context.extras["meta_init"]`. Input-level prompts only.
    """

    needs = frozenset({"meta_init"})

    def __init__(self, **prompt_tuning_options) -> None:
        prompt_tuning_options.pop("init_file", None)
        if prompt_tuning_options.get("depth", "input") != "input":
            raise ConfigError("method=metapt/ppt meta-learns an input-level prompt; set method.module.depth=input.")
        super().__init__(**prompt_tuning_options)
        self.init_artefact: str | None = None

    def prepare(self, context: MethodContext) -> None:
        init_prompt = context.extras.get("meta_init")
        if init_prompt is None:
            raise ConfigError("method=metapt/ppt starts from an init artefact, but the builder served none.")
        self.init, self.init_file = "file", str(init_prompt)
        self.init_artefact = str(Path(init_prompt).parent)
        super().prepare(context)

    def record_info(self) -> dict[str, Any]:
        return {"init_artefact": self.init_artefact}
