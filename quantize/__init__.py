"""edgeformer.quantize: quantization recipes for bundles, with measured fidelity and an accuracy budget.

Built on onnxruntime.quantization; never imports torch.
"""

from .bundle import BudgetError, QuantizeResult, budget_parity, quantize_bundle
from .evaluate import EvalSet, Fidelity, default_eval_texts, evaluate, read_eval_file
from .recipes import RECIPES, QuantizeError, RecipeOptions, apply_recipe

__all__ = ["BudgetError", "budget_parity", "EvalSet", "Fidelity", "QuantizeError", "QuantizeResult", "RECIPES", "RecipeOptions",
           "apply_recipe", "default_eval_texts", "evaluate", "quantize_bundle", "read_eval_file"]
