"""Residual-stream decomposition of the logit difference (direct logit attribution)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patchlab._version import __version__
from patchlab.core.errors import SessionFileError
from patchlab.core.result import RUN_FORMAT, RUN_FORMAT_VERSION, RunRecord, _nan_array, check_record

RUNS = ("clean", "corrupted")


@dataclass
class DecomposeResult(RunRecord):
    """Direct logit attribution for the clean and the corrupted run.

    Every array has a leading axis ``run`` of length 2 (clean, corrupted); each value is a
    component's contribution to the answer-minus-wrong logit difference at the last position,
    with the final LayerNorm scale applied as TransformerLens's ``apply_ln_to_stack`` does.

    Attributes
    ----------
    component_labels : list of str
        ``embed``, ``pos_embed``, ``0_attn_out``, ``0_mlp_out``, ..., and ``bias`` (constant
        terms: unembedding bias, final LayerNorm bias), so the components sum to the total.
    components : ndarray (2, n_components)
    heads : ndarray (2, n_layers, n_heads)
        Per-head contributions (``L0H3`` = ``heads[:, 0, 3]``).
    lens_labels : list of str
        ``0_pre``, ``0_mid``, ..., ``final_post``: accumulated residual (logit lens).
    logit_lens : ndarray (2, n_lens)
    total : ndarray (2,)
        The logit difference of each run.
    runs : dict
        Per run: ``answer_prob``, ``wrong_prob``, ``logit_diff``, ``answer_logprob``,
        ``top_k`` (list of [token, prob]) and ``tokens``.
    meta : dict
        Model, processing mode, the pair, patchlab version, elapsed time.
    """

    component_labels: list[str]
    components: np.ndarray
    heads: np.ndarray
    lens_labels: list[str]
    logit_lens: np.ndarray
    total: np.ndarray
    runs: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def run_index(self, run: str) -> int:
        return RUNS.index(run)

    def to_csv(self) -> str:
        """Tidy CSV: ``kind, run, label, layer, head, value`` (kinds: component, head, logit_lens)."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["kind", "run", "label", "layer", "head", "value"])
        for r, run in enumerate(RUNS):
            for label, v in zip(self.component_labels, self.components[r]):
                w.writerow(["component", run, label, "", "", repr(float(v))])
            n_layers, n_heads = self.heads.shape[1:]
            for layer in range(n_layers):
                for head in range(n_heads):
                    w.writerow(["head", run, f"L{layer}H{head}", layer, head, repr(float(self.heads[r, layer, head]))])
            for label, v in zip(self.lens_labels, self.logit_lens[r]):
                w.writerow(["logit_lens", run, label, "", "", repr(float(v))])
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "patchlab_version": __version__,
            "kind": "decompose",
            "component_labels": self.component_labels,
            "components": self.components,
            "heads": self.heads,
            "lens_labels": self.lens_labels,
            "logit_lens": self.logit_lens,
            "total": self.total,
            "runs": self.runs,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecomposeResult:
        check_record(data, "decompose")
        try:
            res = cls(
                component_labels=list(data["component_labels"]),
                components=_nan_array(data["components"]),
                heads=_nan_array(data["heads"]),
                lens_labels=list(data["lens_labels"]),
                logit_lens=_nan_array(data["logit_lens"]),
                total=_nan_array(data["total"]),
                runs=dict(data["runs"]),
                meta=dict(data.get("meta", {})),
            )
            # one row per run, one column per label: what the views and the CSV index
            n = len(RUNS)
            if (res.components.shape != (n, len(res.component_labels)) or res.heads.ndim != 3
                    or res.heads.shape[0] != n or res.logit_lens.shape != (n, len(res.lens_labels))
                    or res.total.shape != (n,)):
                raise ValueError("the arrays do not match the labels (one row per run)")
            if not all(isinstance(x, str) for x in res.component_labels + res.lens_labels):
                raise ValueError("labels must be text")
            if not all(isinstance(res.runs.get(r, {}), dict) for r in RUNS):
                raise ValueError("'runs' must hold an object per run")
            return res
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SessionFileError(f"The decomposition record is malformed ({exc}).") from exc

