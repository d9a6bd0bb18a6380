"""Prompt tuning: a learned P in R^{n x d} before the input (Lester et al., 2021), or, with
depth=deep, learned key/value prefixes at every attention layer (P-tuning v2, Liu et al., 2022)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prompt_bench.errors import ConfigError
from prompt_bench.export.peft_files import load_prompt_file
from prompt_bench.methods.base import MethodContext, PromptMethod
from prompt_bench.methods.prefix import PrefixEncoder

INITS = ("random", "vocab", "text", "labels", "file")
DEPTHS = ("input", "deep")
DEEP_INITS = ("random", "vocab", "file")  # a prefix table has no token rows to copy from text or labels
RANDOM_INITS = ("uniform", "uniform_t5x", "normal")


class PromptTuning(PromptMethod):
    """n soft tokens, shared by all inputs.

    depth=input: prompt(batch) = P expanded to (B, n, d), in front of the input embeddings.
    Initialisation (Lester et al. sec. 3.2; prompt-tuning prompts.py), P of shape (n, d):
    - `random`: random_init=uniform U(-init_range, init_range), the paper's [-0.5, 0.5]; uniform_t5x
      U[0, init_range), what the gin's `linen.initializers.uniform(scale=0.5)` draws; normal N(0, init_std²).
    - `vocab`: n rows drawn without replacement from the `vocab_top_k` first rows of the embedding table
      (official `from_sample_of_embeddings`, population 5000); vocab_skip_special leaves special and
      placeholder tokens ([CLS], [unused12], <s>) out of that population.
    - `labels`: row i = the mean of the sub-word embeddings of class label i (official `from_embedded_list`),
      the other n - C rows vocab rows as above.
    - `text`: the embeddings of `init_text` tokens, repeated to length n; `file`: a saved prompt.

    depth=deep: no input prompt; layer_prefixes(batch) gives n key/value prefixes for every
    self-attention layer from a `PrefixEncoder` (for init=random or the default vocab: table
    N(0, prefix_init_std²) and MLP linears N(0, prefix_init_std²) with zero biases, what P-tuning
    v2's from_pretrained gives, 0.02; prefix_init_std=None keeps PyTorch's constructor init, the
    table N(0, 1); init=file loads a saved `prefix_embeddings` table). prefix_projection
    reparameterises the table with a 2-layer MLP of width prefix_hidden; prefix_dropout is the
    dropout on the prefixes during training. Those four are ignored for depth=input.
    """

    inits: tuple[str, ...] = INITS
    """The `init` values this class takes (a subclass may add its own)."""

    def __init__(
        self,
        n_tokens: int = 100,
        init: str = "vocab",
        init_text: str | None = None,
        init_file: str | None = None,
        random_init: str = "uniform",
        init_range: float = 0.5,
        init_std: float = 0.02,
        vocab_top_k: int = 5000,
        vocab_skip_special: bool = True,
        seed: int = 0,
        depth: str = "input",
        prefix_projection: bool = False,
        prefix_hidden: int = 512,
        prefix_dropout: float = 0.1,
        prefix_init_std: float | None = 0.02,
    ) -> None:
        super().__init__()
        if init not in self.inits:
            raise ConfigError(f"method.module.init '{init}' is not one of {', '.join(self.inits)}.")
        if random_init not in RANDOM_INITS:
            raise ConfigError(f"method.module.random_init '{random_init}' is not one of {', '.join(RANDOM_INITS)}.")
        if depth not in DEPTHS:
            raise ConfigError(f"method.module.depth '{depth}' is not one of {', '.join(DEPTHS)}.")
        if depth == "deep" and init not in DEEP_INITS:
            raise ConfigError(
                f"method.module.init={init} initialises input-level prompt tokens, but depth=deep learns a prefix "
                f"table for every layer; use init=random (N(0, prefix_init_std²), as P-tuning v2) or init=file."
            )
        if prefix_projection and depth != "deep":
            raise ConfigError("method.module.prefix_projection=true reparameterises deep prompts; set depth=deep.")
        if not 0.0 <= prefix_dropout < 1.0:
            raise ConfigError(f"method.module.prefix_dropout must be in [0, 1), got {prefix_dropout}.")
        if prefix_init_std is not None and prefix_init_std <= 0:
            raise ConfigError(
                f"method.module.prefix_init_std must be > 0 (or null for PyTorch's own init), got {prefix_init_std}."
            )
        if init == "text" and not init_text:
            raise ConfigError("method.module.init=text needs method.module.init_text='a sentence to start from'.")
        if init == "file" and not init_file:
            raise ConfigError("method.module.init=file needs method.module.init_file=/path/to/prompt.safetensors.")
        if n_tokens < 1:
            raise ConfigError(f"method.module.n_tokens must be >= 1, got {n_tokens}.")
        self.n_tokens = n_tokens
        self.init = init
        self.init_text = init_text
        self.init_file = init_file
        self.random_init = random_init
        self.init_range = init_range
        self.init_std = init_std
        self.vocab_top_k = vocab_top_k
        self.vocab_skip_special = vocab_skip_special
        self.seed = seed
        self.depth = depth
        self.prefix_projection = prefix_projection
        self.prefix_hidden = prefix_hidden
        self.prefix_dropout = prefix_dropout
        self.prefix_init_std = prefix_init_std
        self.prompt_embeddings: nn.Parameter | None = None
        self.prefix_encoder: PrefixEncoder | None = None

    def prepare(self, context: MethodContext) -> None:
        """Create P (fp32, whatever the backbone dtype) from the chosen initialisation."""
        if self.depth == "deep":
            self._prepare_prefixes(context)
            return
        table = context.adapter.input_embeddings.weight.detach().float()
        generator = torch.Generator().manual_seed(self.seed)
        rows = self._initial_rows(table, context, generator)
        self.prompt_embeddings = nn.Parameter(rows.clone().to(table.device))

    def _initial_rows(self, table: Tensor, context: MethodContext, generator: torch.Generator) -> Tensor:
        n, d = self.n_tokens, table.shape[1]
        tokenizer = context.adapter.tokenizer
        if self.init == "random":
            return self._random_rows(n, d, generator)
        if self.init == "file":
            return self._rows_from_file(d)
        if self.init == "text":
            token_ids = tokenizer.encode(self.init_text, add_special_tokens=False)[:n]
            if token_ids:
                rows = table[torch.tensor(token_ids, dtype=torch.long)]
                return rows.repeat(-(-n // len(token_ids)), 1)[:n].cpu()
            return self._vocab_rows(table, n, generator, tokenizer)
        if self.init == "labels":
            rows = self._label_rows(table, context.label_names[:n], tokenizer)
            return torch.cat([rows, self._vocab_rows(table, n - len(rows), generator, tokenizer)])
        return self._vocab_rows(table, n, generator, tokenizer)

    def _random_rows(self, n: int, d: int, generator: torch.Generator) -> Tensor:
        """(n, d): U(-r, r) (paper), U[0, r) (flax's uniform, as the gin draws it) or N(0, init_std²)."""
        if self.random_init == "normal":
            return torch.randn(n, d, generator=generator) * self.init_std
        unit = torch.rand(n, d, generator=generator)  # U[0, 1)
        if self.random_init == "uniform_t5x":
            return unit * self.init_range
        return (2.0 * unit - 1.0) * self.init_range

    @staticmethod
    def _label_rows(table: Tensor, label_names, tokenizer) -> Tensor:
        """(C, d): row i = the mean of label i's sub-word embeddings (Lester et al.: multi-token labels averaged)."""
        rows = []
        for label in label_names:
            token_ids = tokenizer.encode(str(label), add_special_tokens=False)
            if not token_ids:
                raise ConfigError(f"method.module.init=labels: label '{label}' has no tokens; use init=vocab.")
            rows.append(table[torch.tensor(token_ids, dtype=torch.long)].mean(dim=0))
        return torch.stack(rows).cpu() if rows else table[:0].cpu()

    def _vocab_rows(self, table: Tensor, count: int, generator: torch.Generator, tokenizer) -> Tensor:
        """(count, d): rows drawn without replacement (with replacement only when count exceeds the population)
        from the first `vocab_top_k` rows of the table, special and placeholder tokens such as [unused12] or
        <s> left out of them when vocab_skip_special."""
        population = torch.arange(table.shape[0])
        if self.vocab_skip_special:
            special = set(tokenizer.all_special_ids)
            tokens = tokenizer.convert_ids_to_tokens(range(table.shape[0]))
            population = torch.tensor(
                [
                    token_id
                    for token_id, token in enumerate(tokens)
                    if token is not None and token_id not in special and not (token[:1] in "[<" and token[-1:] in "]>")
                ]
            )
        population = population[: self.vocab_top_k]
        if count <= len(population):
            picks = population[torch.randperm(len(population), generator=generator)[:count]]
        else:
            picks = population[torch.randint(0, len(population), (count,), generator=generator)]
        return table.cpu()[picks]

    def _rows_from_file(self, hidden_size: int) -> Tensor:
        tensors = load_prompt_file(self.init_file)
        rows = tensors.get("prompt_embeddings")
        if rows is None or rows.shape != (self.n_tokens, hidden_size):
            found = {k: tuple(v.shape) for k, v in tensors.items()}
            raise ConfigError(
                f"{self.init_file} holds {found}, but this run needs prompt_embeddings of shape "
                f"({self.n_tokens}, {hidden_size}); match method.module.n_tokens and the backbone."
            )
        return rows.float()

    # ---- depth=deep ------------------------------------------------------------------------
    def _prepare_prefixes(self, context: MethodContext) -> None:
        """Create the fp32 prefix table for the backbone's attention layers (file or N(0, prefix_init_std²))."""
        adapter = context.adapter
        reason = adapter.layer_prefix_support()
        if reason:
            raise ConfigError(f"method.module.depth=deep: {reason}; use depth=input with this backbone.")
        self.prefix_encoder = PrefixEncoder(
            n_tokens=self.n_tokens,
            geometry=adapter.prefix_geometry,
            model_dim=adapter.hidden_size,
            projection=self.prefix_projection,
            projection_hidden=self.prefix_hidden,
            dropout=self.prefix_dropout,
            seed=self.seed,
            init_std=self.prefix_init_std,
        )
        if self.init == "file":
            self._load_prefix_tensors(load_prompt_file(self.init_file), source=self.init_file)
        self.prefix_encoder.to(adapter.input_embeddings.weight.device)

    def _load_prefix_tensors(self, tensors: dict[str, Tensor], source: str = "the saved prefix") -> None:
        """Copy a saved prefix (`prompt_tensors` of a deep run) in, after checking names and shapes."""
        expected = self.prefix_encoder.expected_shapes()
        found = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
        if found != expected:
            raise ConfigError(
                f"{source} holds {found}, but this run needs {expected} (depth=deep, n_tokens={self.n_tokens}, "
                f"prefix_projection={self.prefix_projection}); match method.module.depth, n_tokens, "
                "prefix_projection, prefix_hidden and the backbone of the run that saved it."
            )
        with torch.no_grad():
            for name, parameter in self.prefix_encoder.named_parameters():
                parameter.copy_(tensors[name])

    # ---- the prompt ----------------------------------------------------------------------------
    def prompt(self, batch: dict[str, Tensor], input_embeds: Tensor | None = None) -> Tensor | None:
        if self.depth == "deep":
            return None
        batch_size = batch["input_ids"].shape[0]
        return self.prompt_embeddings.unsqueeze(0).expand(batch_size, -1, -1)

    def layer_prefixes(self, batch: dict[str, Tensor]) -> Tensor | None:
        if self.depth != "deep":
            return None
        return self.prefix_encoder(batch["input_ids"].shape[0])

    def prompt_tensors(self) -> dict[str, Tensor]:
        """input: {"prompt_embeddings": (n, d)}; deep: {"prefix_embeddings": (n, 2·N·H·h)} (or
        (n, d) plus the "prefix_mlp.*" weights with prefix_projection)."""
        if self.depth == "deep":
            return {name: parameter.detach() for name, parameter in self.prefix_encoder.named_parameters()}
        return {"prompt_embeddings": self.prompt_embeddings.detach()}

    def load_prompt_tensors(self, tensors: dict[str, Tensor]) -> None:
        if self.depth == "deep":
            self._load_prefix_tensors(tensors)
            return
        with torch.no_grad():
            self.prompt_embeddings.copy_(tensors["prompt_embeddings"])
