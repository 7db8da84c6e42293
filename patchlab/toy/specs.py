"""The embedded toy models' specs: configs and training hyper-parameters.

Shared by :mod:`patchlab.toy.train` (which trains them) and :mod:`patchlab.toy.evaluate` (which
writes their cards); kept apart so that neither of those two imports the other.
"""

from __future__ import annotations

from patchlab.toy.language import vocabulary

SEQ_LEN = 64
DATA_SEED = 1234
EVAL_SEED = 98765

#: The models: native TransformerBridge configs plus training hyper-parameters.
SPECS: dict[str, dict] = {
    "toy-attn2": {
        "description": "2-layer attention-only transformer (4 heads/layer, learned positions): "
        "bigrams, skip-trigrams, verb-object association and induction. The default model.",
        "config": {
            "n_layers": 2, "d_model": 64, "n_heads": 4, "d_head": 16, "n_ctx": SEQ_LEN,
            "attn_only": True, "normalization_type": "LN", "positional_embedding_type": "standard",
        },
        # phase 1 trains on repeated filler runs only: the induction head forms there (a phase
        # change around step 1.5-2.5k); phase 2 adds the toy language and keeps 40% repeats
        "induction_warmup": 3000,
        "steps": 9000, "batch": 32, "lr": 2e-3, "seed": 0,
        "notes": [
            "Trained with an induction curriculum: the first 3000 steps see only documents made "
            "of a repeated run of random fillers, where the previous-token head (layer 0) and "
            "the induction head (layer 1) form after a plateau; without that phase, 4000 mixed "
            "steps on the toy language never formed an induction head.",
            "SURPRISE (skip-trigrams): no head attends from the adjective to the earlier place "
            "directly (at most ~0.2). Instead the previous-token head in layer 0 copies the "
            "place into the filler right after it, and a layer-1 head (one of the induction "
            "heads) attends from the adjective to that filler (~0.9): the induction machinery "
            "(K-composition with the previous-token head) is reused to fetch the place. See "
            "head_scores.skip_query_to_after_place.",
        ],
    },
    "toy-attn1": {
        "description": "1-layer attention-only transformer (4 heads, learned positions), same "
        "tokenizer and vocabulary as toy-attn2: bigrams, skip-trigrams and verb-object "
        "association; one layer cannot form an induction head. Compare it with toy-attn2 to "
        "see what the second layer adds.",
        "config": {
            "n_layers": 1, "d_model": 64, "n_heads": 4, "d_head": 16, "n_ctx": SEQ_LEN,
            "attn_only": True, "normalization_type": "LN", "positional_embedding_type": "standard",
        },
        "steps": 6000, "batch": 32, "lr": 2e-3, "seed": 0,
        "notes": [
            "Trained on the same mixture as toy-attn2 (without its induction-only warm-up, "
            "which a single layer cannot use); induction stays near chance, so its induction "
            "examples are negative controls and it is the baseline of the 1-layer vs 2-layer "
            "comparison (patchlab text compare).",
        ],
    },
    "toy-solu1": {
        "description": "1-layer transformer with a SoLU MLP (act_fn='solu_ln', 4 heads): "
        "bigrams, skip-trigrams and verb-object association; one layer cannot form an "
        "induction head.",
        "config": {
            "n_layers": 1, "d_model": 64, "n_heads": 4, "d_head": 16, "n_ctx": SEQ_LEN,
            "d_mlp": 256, "act_fn": "solu_ln", "attn_only": False, "normalization_type": "LN",
            "positional_embedding_type": "standard",
        },
        "steps": 2000, "batch": 32, "lr": 3e-3, "seed": 0,
        "notes": [
            "As expected for one layer, induction fails (near-chance top-1); its induction "
            "examples are negative controls.",
        ],
    },
}


def full_config(name: str) -> dict:
    """Return the complete ``boot_native`` config dict of model ``name``."""
    spec = SPECS[name]
    return {
        **spec["config"], "d_vocab": len(vocabulary()), "seed": spec["seed"],
        "init_mode": "gpt2", "model_name": name,
    }


