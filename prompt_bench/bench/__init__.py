"""The benchmark suite (`prompt-bench-bench`): sections measured side by side in one process.

Sections (prompt_bench/bench/registry.py, one module each):
- `throughput`: samples/s of prompt_bench's train step against the floor (a frozen forward +
  backward at the same shape), a hand-written loop and HF PEFT PromptTuning; peak memory per side;
  MFU on a GPU.
- `startup`: a run's start on warm caches, import to first optimizer step, split into phases.
- `packed`: K packed runs against K sequential ones (needs `prompt_bench.packing`).

Importing this package is light (no torch): the CLI imports a section only when it runs.
"""
