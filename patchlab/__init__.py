"""patchlab: activation patching for transformer language models.

The public API: :func:`load_model`, :class:`PromptPair`, :func:`patch`, :func:`decompose`,
:func:`examples`. Long jobs are generators (:func:`iter_patch`, :func:`iter_decompose`).
"""

from patchlab._version import __version__
from patchlab.core.errors import (
    InputError,
    ModelLoadError,
    PairError,
    PatchlabError,
    TargetUnavailableError,
)
from patchlab.core.metrics import DIRECTIONS, METHODS, METRICS
from patchlab.core.pairs import PromptPair
from patchlab.core.result import PatchResult
from patchlab.core.targets import TARGETS

__all__ = [
    "__version__",
    "load_model",
    "model_info",
    "PromptPair",
    "patch",
    "iter_patch",
    "decompose",
    "iter_decompose",
    "examples",
    "path_patch",
    "effects",
    "neurons",
    "PatchResult",
    "TARGETS",
    "METRICS",
    "DIRECTIONS",
    "METHODS",
    "PatchlabError",
    "InputError",
    "PairError",
    "ModelLoadError",
    "TargetUnavailableError",
    # pair sets (issue 8)
    "load_pairs",
    "save_pairs",
    "generate_pairs",
    # circuits from the weights and from text (issue 10)
    "direct_path",
    "ov_circuit",
    "qk_circuit",
    "positional_qk",
    "composition_scores",
    "token_losses",
    "iter_token_losses",
    "ablate",
    "iter_ablate",
    "compare_models",
    "iter_compare_models",
    "token_ablation",
    "top_examples",
    "iter_top_examples",
    "toy_corpus",
]

_LAZY = {
    "load_model": ("patchlab.engine.loading", "load_model"),
    "model_info": ("patchlab.engine.loading", "model_info"),
    "patch": ("patchlab.engine.sweep", "patch"),
    "iter_patch": ("patchlab.engine.sweep", "iter_patch"),
    "decompose": ("patchlab.engine.decompose", "decompose"),
    "iter_decompose": ("patchlab.engine.decompose", "iter_decompose"),
    "DecomposeResult": ("patchlab.core.decomposition", "DecomposeResult"),
    # pair sets (issue 8)
    "load_pairs": ("patchlab.core.pairset", "load_pairs"),
    "save_pairs": ("patchlab.core.pairset", "save_pairs"),
    "generate_pairs": ("patchlab.engine.pairgen", "generate_pairs"),
    # path patching, effects, neurons (issue 9)
    "path_patch": ("patchlab.engine.paths", "path_patch"),
    "iter_path_patch": ("patchlab.engine.paths", "iter_path_patch"),
    "effects": ("patchlab.engine.effects", "effects"),
    "iter_effects": ("patchlab.engine.effects", "iter_effects"),
    "neurons": ("patchlab.engine.neurons", "neurons"),
    "iter_neurons": ("patchlab.engine.neurons", "iter_neurons"),
    "NeuronResult": ("patchlab.core.neurons", "NeuronResult"),
    # circuits from the weights and from text (issue 10)
    "direct_path": ("patchlab.engine.weights", "direct_path"),
    "ov_circuit": ("patchlab.engine.weights", "ov_circuit"),
    "qk_circuit": ("patchlab.engine.weights", "qk_circuit"),
    "positional_qk": ("patchlab.engine.weights", "positional_qk"),
    "composition_scores": ("patchlab.engine.weights", "composition_scores"),
    "token_losses": ("patchlab.engine.text.losses", "token_losses"),
    "iter_token_losses": ("patchlab.engine.text.losses", "iter_token_losses"),
    "compare_models": ("patchlab.engine.text.losses", "compare_models"),
    "iter_compare_models": ("patchlab.engine.text.losses", "iter_compare_models"),
    "ablate": ("patchlab.engine.text.ablate", "ablate"),
    "iter_ablate": ("patchlab.engine.text.ablate", "iter_ablate"),
    "token_ablation": ("patchlab.engine.text.token_ablation", "token_ablation"),
    "top_examples": ("patchlab.engine.text.top_examples", "top_examples"),
    "iter_top_examples": ("patchlab.engine.text.top_examples", "iter_top_examples"),
    "toy_corpus": ("patchlab.engine.text.corpus", "toy_corpus"),
    "TokenScores": ("patchlab.core.text_result", "TokenScores"),
    "TopExamples": ("patchlab.core.text_result", "TopExamples"),
    "AblationResult": ("patchlab.core.ablation_result", "AblationResult"),
    "WeightMatrix": ("patchlab.core.weights_result", "WeightMatrix"),
    "CompositionResult": ("patchlab.core.weights_result", "CompositionResult"),
}


def __getattr__(name):
    # torch and TransformerLens load on first use, so `import patchlab` stays fast
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'patchlab' has no attribute {name!r}")


def examples(model=None):
    """Built-in example prompt pairs for ``model`` (a name, a loaded model, or None).

    Returns a list of objects with ``name``, ``rule``, ``description`` and ``pair``.
    """
    from patchlab.core.examples import load_examples

    if model is not None and not isinstance(model, str):
        from patchlab.engine.loading import model_info as _info

        model = _info(model).name
    return load_examples(model)
