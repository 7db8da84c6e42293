"""TransformerLens's own per-cell patching loop (``get_act_patch_*`` under no_grad): the oracle."""

from __future__ import annotations

import torch
import transformer_lens.patching as tlp

from patchlab.engine.tokens import tokenize_pairs


def tl_reference(model, pairs, target: str, direction: str = "denoise", metric: str = "logit_diff"):
    """Values of ``get_act_patch_<target>`` for ``pairs`` (float64 numpy), batch-averaged."""
    tps = tokenize_pairs(model, pairs)
    clean = torch.cat([tp.clean for tp in tps])
    corrupted = torch.cat([tp.corrupted for tp in tps])
    ans = torch.tensor([tp.answer_id for tp in tps])
    wrong = torch.tensor([tp.wrong_id for tp in tps])
    rows = torch.arange(len(tps))
    base_tokens, src_tokens = (corrupted, clean) if direction == "denoise" else (clean, corrupted)

    def ld(logits):
        return (logits[rows, -1, ans] - logits[rows, -1, wrong]).mean()

    with torch.no_grad():
        src_logits, src_cache = model.run_with_cache(src_tokens)
        base_ld, src_ld = ld(model(base_tokens)), ld(src_logits)

        def metric_fn(logits):
            if metric == "logit_diff":
                return ld(logits)
            if metric == "logit_diff_recovered":
                return (ld(logits) - base_ld) / (src_ld - base_ld)
            lp = torch.log_softmax(logits[rows, -1].double(), -1)[rows, ans]
            return (lp if metric == "answer_logprob" else lp.exp()).mean()

        fn = getattr(tlp, f"get_act_patch_{target}")
        return fn(model, base_tokens, src_cache, metric_fn).double().numpy()
