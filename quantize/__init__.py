"""edgeformer.quantize: quantization recipes for bundles, with measured fidelity and an accuracy budget.

Built on onnxruntime.quantization; never imports torch.
"""

from .bundle import budget_parity, quantize_bundle
from .calibration import calibration_batches, default_calibration_texts
from .evaluate import EvalSet, Fidelity, default_eval_texts, evaluate, read_eval_file
from .media import ArrayEvalSet
from .generation_eval import GenerationData, GenerationFidelity, read_generation_data
from .recipes import CALIBRATION_METHODS, RECIPES, QuantizeError, RecipeOptions, apply_recipe
from .report import compare_recipes, plot_tradeoff
from .result import BudgetError, QuantizeResult

__all__ = ["ArrayEvalSet", "BudgetError", "budget_parity", "CALIBRATION_METHODS", "calibration_batches", "compare_recipes",
           "default_calibration_texts", "EvalSet", "Fidelity", "GenerationData", "GenerationFidelity", "QuantizeError",
           "QuantizeResult", "RECIPES",
           "RecipeOptions", "apply_recipe", "default_eval_texts", "evaluate", "plot_tradeoff", "quantize_bundle",
           "read_eval_file", "read_generation_data"]
