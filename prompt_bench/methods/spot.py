"""SPoT / PoT prompt transfer (Vu et al., ACL 2022): start the target prompt from a source prompt."""

from __future__ import annotations

from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.prompt_tuning import PromptTuning


class SPoT(PromptTuning):
    """Prompt tuning whose P starts as the source task's trained prompt, then tunes on the target.

    The source prompt is a shared artefact (trained once per source task, backbone, prompt
    settings and seed; see `prompt_bench.transfer.artefacts`), handed in as `context.extras["source_prompt"]`.
    """

    needs = frozenset({"source_prompt"})

    def __init__(self, **prompt_tuning_options) -> None:
        prompt_tuning_options.pop("init_file", None)
        super().__init__(**prompt_tuning_options)

    def prepare(self, context: MethodContext) -> None:
        source_prompt = context.extras.get("source_prompt")
        if source_prompt is None:
            raise ConfigError(
                "method=spot transfers a source prompt: choose a pair with transfer=<source>_to_<target>."
            )
        self.init, self.init_file = "file", str(source_prompt)
        super().prepare(context)
