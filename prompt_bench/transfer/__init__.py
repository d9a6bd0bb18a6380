"""Prompt transfer: a (source task -> target task) pair, the artefacts a transfer run consumes,
and how well a source prompt should transfer.

Modules (import them directly; this package imports none, so importing it costs nothing):
`pairs` (checking a pair, the configs of the runs it depends on), `artefacts` (source prompt,
teacher logits and target prompt, made through a `train_run` the builder hands in), `metrics`
(SPoT's E_avg and C_tok, PANDA's MSS, activated-neuron overlap, reading FFN activations) and
`matrix` (`prompt-bench-transferability`: the metrics over every pair of tasks in a sweep).

Imports run one way: pairs <- metrics <- artefacts <- build <- matrix.
"""
