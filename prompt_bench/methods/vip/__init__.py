"""VIP: vector-quantised input-contextualised prompts (method.py), its sampled quantizer (quantizer.py)
and the prompt contextualiser (contextualizer.py)."""

from prompt_bench.methods.vip.contextualizer import Contextualizer
from prompt_bench.methods.vip.method import VIP
from prompt_bench.methods.vip.quantizer import EVAL_CODES, SampledQuantizer

__all__ = ["EVAL_CODES", "VIP", "Contextualizer", "SampledQuantizer"]
