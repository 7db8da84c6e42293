"""Architecture x target x engine matrix -> docs/architectures.md (issue 13).

Builds the tiny random models of ``tests/tiny_models.py`` (2-3 layers, offline), runs every
patching target on both exact engines and compares with TransformerLens's ``get_act_patch_*``
under ``no_grad`` (tolerance 1e-4). A cell is

- ``match``: equal to TransformerLens's reference;
- ``identities``: TransformerLens has no reference (``resid_post``); the engine passes the
  identities every correct engine obeys (resid_post[L] = resid_pre[L+1]; the last layer's last
  position reproduces the source run);
- ``refused: ...``: the engine raised ``TargetUnavailableError`` with this reason;
- ``hook path (...)``: ``auto`` fell back from the fast path, with the recorded reason
  (the values still match: the cell says so);
- ``MISMATCH``: a bug.

Usage::

    python benchmarks/arch_table.py [--archs llama3,gptj] [--out docs/architectures.md]

On 2 shared CPU cores the full table takes about 15-30 minutes (TransformerLens's loop runs
one forward pass per cell).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import tiny_models  # noqa: E402
from tl_reference import tl_reference  # noqa: E402

import patchlab  # noqa: E402
from patchlab.core.targets import TARGETS  # noqa: E402

TOL = 1e-4
PAIR = patchlab.PromptPair("John gave a drink to", "Mary gave a drink to", " Mary", " John")
ALL = ("gpt2", "neox", "llama") + tiny_models.MODERN_ARCHS
NAMES = {
    "gpt2": "GPT-2", "neox": "GPT-NeoX (Pythia)", "llama": "Llama 2 (GQA)", "gptj": "GPT-J",
    "llama3": "Llama 3 (GQA)", "mistral": "Mistral (sliding window 4, GQA)", "qwen2": "Qwen2 (q/k/v biases)",
    "qwen3": "Qwen3 (q/k norms)", "gemma2": "Gemma 2 (offset + post norms, soft-capping, sliding window)",
    "gemma3": "Gemma 3 (offset + post + q/k norms, soft-capping, sliding window)", "phi3": "Phi-3",
    "olmo2": "OLMo 2 (post norms, q/k norms)",
}


FOOTER = """
## Not covered by this table

- **Fast path for OLMo 2 and GPT-J**: not implemented. OLMo 2 has norms after attention and MLP
  but none before them, and query/key norms over all heads together; GPT-J one shared LayerNorm and
  interleaved rotary. They run on the hook engine, and the reason is recorded. (Gemma 2/3 run on the
  fast path: post-norms, (1 + w) norms, soft-capping, per-layer windows and rotary bases.)
- **GPU**: no GPU was available while this was written. `python benchmarks/bench_gpu.py` prints the
  GPU table (GPT-2-small shape, 16 tokens: first row, sweep, peak memory, engine); on a machine
  without CUDA it prints "no GPU". It has been run only with `--device cpu`.
- **Several devices**: `load_model(..., device_map=..., max_memory=...)` is passed to
  `TransformerBridge.boot_transformers`. Tested on the CPU only (`device_map={"": "cpu"}` and a
  per-layer map of `cpu`, both engines, equal values); a split over several GPUs was not run. The
  fast engine refuses a model whose parameters sit on more than one device (reason recorded) and
  the hook engine runs it.
"""


def build(arch: str, folder: Path) -> Path:
    if arch in tiny_models.ARCHS:
        return tiny_models.build(arch, folder)
    return tiny_models.build_modern(arch, folder)


def _identities(model, engine: str) -> str:
    post = patchlab.patch(model, PAIR, target="resid_post", metric="logit_diff", engine=engine)
    pre = patchlab.patch(model, PAIR, target="resid_pre", metric="logit_diff", engine=engine)
    ok = np.allclose(post.values[:-1], pre.values[1:], atol=TOL, rtol=0)
    ok &= abs(post.values[-1, -1] - post.meta["runs"]["clean"]["logit_diff"]) <= TOL
    return cell(post, "identities" if ok else "IDENTITY FAILS")


def cell(res, status: str) -> str:
    if res.meta["engine_path"] == "generic-hooks" and res.meta.get("fallback_reason"):
        return f"{status}, hook path ({res.meta['fallback_reason']})"
    return status


def neuron_reference(model, target: str, n_cells: int = 48, seed: int = 0) -> tuple[tuple, np.ndarray]:
    """Hand-hooked values of ``n_cells`` random cells of a neuron target (TL has no neuron patcher).

    Each cell copies the clean run's ``mlp.hook_post`` at (layer, [pos,] neuron) into the
    corrupted run with ``run_with_hooks`` and reads the logit difference.
    """
    import torch

    from patchlab.engine.tokens import tokenize_pairs

    tp = tokenize_pairs(model, [PAIR])[0]
    rng = np.random.default_rng(seed)
    by_pos = target.endswith("by_pos")
    n_layers, d_mlp, n_pos = model.cfg.n_layers, model.cfg.d_mlp, tp.n_pos
    cells = [(int(rng.integers(n_layers)),) + ((int(rng.integers(n_pos)),) if by_pos else ()) + (int(rng.integers(d_mlp)),)
             for _ in range(n_cells)]
    vals = []
    with torch.no_grad():
        _, cache = model.run_with_cache(tp.clean)
        for c in cells:
            name = f"blocks.{c[0]}.mlp.hook_post"
            src = cache[name]

            def hook(act, hook, c=c, src=src):
                act = act.clone()
                idx = (slice(None), c[1], c[2]) if by_pos else (slice(None), slice(None), c[1])
                act[idx] = src[idx]
                return act

            logits = model.run_with_hooks(tp.corrupted, fwd_hooks=[(name, hook)])
            vals.append(float(logits[0, -1, tp.answer_id] - logits[0, -1, tp.wrong_id]))
    return tuple(np.array(cells).T), np.array(vals)


def run_cell(model, target: str, engine: str, refs: dict) -> str:
    if target == "resid_post":
        return _identities(model, engine)
    try:
        res = patchlab.patch(model, PAIR, target=target, metric="logit_diff", engine=engine)
    except patchlab.TargetUnavailableError as exc:
        return f"refused: {str(exc).split(': ', 1)[-1].split('. ')[0]}"
    if target.startswith("mlp_post_neuron"):
        if target not in refs:
            refs[target] = neuron_reference(model, target)
        idx, want = refs[target]
        err = float(np.abs(res.values[idx] - want).max())
        return cell(res, ("match (48 sampled cells, hand hooks)" if err <= TOL else f"MISMATCH ({err:.2g})"))
    if target not in refs:
        refs[target] = tl_reference(model, [PAIR], target)
    err = float(np.abs(res.values - refs[target]).max())
    return cell(res, "match" if err <= TOL else f"MISMATCH ({err:.2g})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default=",".join(ALL))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "architectures.md")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)  # tiny models: one thread is as fast and leaves the machine usable
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            model = patchlab.load_model(str(build(arch, Path(tmp))), device="cpu")
            refs: dict = {}
            for target in args.targets.split(","):
                for engine in ("generic", "auto"):
                    status = run_cell(model, target, engine, refs)
                    rows.append((NAMES.get(arch, arch), target, "fast (auto)" if engine == "auto" else "hooks", status))
                    print(f"{arch:8s} {target:28s} {engine:8s} {status}", file=sys.stderr, flush=True)
    lines = [
        "# Architectures",
        "",
        "Generated by `python benchmarks/arch_table.py` (do not edit by hand) on tiny random models built",
        "offline from `transformers` configs (`tests/tiny_models.py`: 2-3 layers, d_model 32, 4 heads,",
        "norm weights perturbed), one pair `John/Mary gave a drink to`, metric `logit_diff`. `match`:",
        "equal to TransformerLens 4.3's `get_act_patch_*` (under `no_grad`) within 1e-4. `identities`:",
        "TransformerLens has no `resid_post` reference; the engine passes resid_post[L] = resid_pre[L+1]",
        "and 'the last layer's last position reproduces the source run'. `refused`: the sweep raises",
        "`TargetUnavailableError` with this reason (nothing is drawn). `hook path (...)`: `engine=auto`",
        "ran the hook-based engine, with the reason recorded in the run record and printed by the CLI.",
        "",
        "TransformerLens has no neuron patching function: the `mlp_post_neuron*` rows compare 48",
        "randomly sampled cells with hand-written `run_with_hooks` patches of `mlp.hook_post`.",
        "",
        "Before every exact sweep a probe patches the target's whole activation at each layer and",
        "checks the logits move; TransformerLens discards edits to `hook_pattern` on attention it hands",
        "to the Hugging Face module (GPT-J here), and its own reference then shows zeros too - those",
        "targets are refused instead of drawn as zeros.",
        "",
        f"Run time: {time.perf_counter() - t0:.0f} s on this machine.",
        "",
        "| architecture | target | engine | status |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | `{t}` | {e} | {s} |" for a, t, e, s in rows]
    lines += FOOTER.splitlines()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from patchlab.core.io import atomic_write_text

    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
