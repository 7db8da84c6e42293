"""Benchmark: analyses over text (issue 10).

1. All-head mean ablation of toy-attn2 over ``--toy-tokens`` tokens of sampled toy text, against
   the notebook way in the same run: one TransformerLens ``run_with_hooks`` forward pass per
   head and batch (timed on a sample of batches, extrapolated).
2. ``compare_models(toy-attn1, toy-attn2)`` over the same text: tokens per second.
3. All-head mean ablation on a GPT-2-small-shaped random model (12 layers x 12 heads, d_model
   768, vocab 50,257): time and tokens per second over ``--gpt2-tokens`` tokens.

Run: ``.venv/bin/python benchmarks/bench_text.py [--toy-tokens 100000] [--gpt2-tokens 10000]
[--threads 1] [--write docs/benchmarks.md]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

START, END = "<!-- bench_text start -->", "<!-- bench_text end -->"
WORDS = ("the cat sat on a mat while John and Mary went to the store to buy milk and bread ; "
         "Alice sees Bob at the beach , Tom and Anna walk home after the war of 1732").split()


def naive_head_ablation(model, corpus, means, max_batches: int, batch_tokens: int) -> tuple[float, int]:
    """Seconds and tokens for one hooked forward pass per head per batch (the notebook loop)."""
    from patchlab.engine.text.stream import Batch, iter_windows, run_to_end

    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    state = {"t": 0.0, "tokens": 0, "batches": 0}

    def compute(b: Batch) -> np.ndarray:
        if state["batches"] < max_batches:
            t0 = time.perf_counter()
            with torch.inference_mode():
                model(b.tokens)
                for layer in range(n_l):
                    name = f"blocks.{layer}.attn.hook_z"
                    for h in range(n_h):
                        def hook(z, hook, h=h, name=name):
                            z[:, :, h] = means[name][h]
                            return z
                        model.run_with_hooks(b.tokens, fwd_hooks=[(name, hook)])
            state["t"] += time.perf_counter() - t0
            state["tokens"] += sum(b.lengths)
            state["batches"] += 1
        return np.zeros((*b.tokens.shape, 1))

    run_to_end(iter_windows(model, corpus, compute, keep=False, batch_tokens=batch_tokens))
    return state["t"], state["tokens"]


def gpt2_corpus(n_tokens: int, tokens_per_doc: int = 128) -> list[str]:
    rng = np.random.default_rng(0)
    # the benchmark's BPE splits words into ~2 tokens; a doc of ~tokens_per_doc tokens
    n_docs = max(1, n_tokens // tokens_per_doc)
    return [" ".join(rng.choice(WORDS, size=tokens_per_doc // 2)) for _ in range(n_docs)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toy-tokens", type=int, default=100_000)
    p.add_argument("--gpt2-tokens", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--naive-batches", type=int, default=3)
    p.add_argument("--write", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import patchlab
    from patchlab.engine.text.ablate import _Engine, _means, _units, ablate
    from patchlab.engine.text.corpus import toy_corpus
    from patchlab.engine.text.losses import compare_models
    from patchlab.engine.text.stream import run_to_end

    load0 = os.getloadavg()[0]
    rows = []
    a2 = patchlab.load_model("toy-attn2", device="cpu")
    a1 = patchlab.load_model("toy-attn1", device="cpu")
    corpus = toy_corpus(args.toy_tokens // 64, seed=1)
    t0, c0 = time.perf_counter(), time.process_time()
    res = ablate(a2, corpus, components="heads", method="mean", batch_tokens=4096)
    t_abl, c_abl = time.perf_counter() - t0, time.process_time() - c0
    n_tok = res.meta["n_tokens"]
    means = run_to_end(_means(_Engine(a2, "bridge"), corpus, _units(a2, "heads"),
                              {"batch_tokens": 4096, "max_tokens": None, "stop": None}))
    t_naive, tok_naive = naive_head_ablation(a2, corpus, means, args.naive_batches, 4096)
    t_naive_full = t_naive / tok_naive * n_tok
    rows.append(("toy-attn2 all-head mean ablation (8 heads)", n_tok, t_abl, c_abl, n_tok / t_abl,
                 f"{t_naive_full:.1f} s (extrap. from {tok_naive} tokens)", f"{t_naive_full / t_abl:.1f}x",
                 res.meta["engine_path"]))
    t0, c0 = time.perf_counter(), time.process_time()
    cmp_ = compare_models(a1, a2, corpus, batch_tokens=8192)
    t_cmp, c_cmp = time.perf_counter() - t0, time.process_time() - c0
    rows.append(("compare_models toy-attn1 vs toy-attn2", cmp_.meta["n_tokens"], t_cmp, c_cmp,
                 cmp_.meta["n_tokens"] / t_cmp, "", "", "bridge"))
    if args.gpt2_tokens:
        from bench_patching import build_model

        with tempfile.TemporaryDirectory() as tmp:
            g = patchlab.load_model(str(build_model(Path(tmp))), device="cpu")
            texts = gpt2_corpus(args.gpt2_tokens)
            t0, c0 = time.perf_counter(), time.process_time()
            gres = ablate(g, texts, components="heads", method="mean", batch_tokens=256)
            t_g, c_g = time.perf_counter() - t0, time.process_time() - c0
            n_g = gres.meta["n_tokens"]
            rows.append((f"GPT-2-small shape all-head mean ablation (144 heads); 10k tokens extrapolated: "
                         f"{t_g / n_g * 1e4 / 60:.0f} min wall, {c_g / n_g * 1e4 / 60:.0f} min CPU", n_g, t_g, c_g,
                         n_g / t_g, "", "", gres.meta["engine_path"]))
    load1 = os.getloadavg()[0]
    lines = [
        START, "## Text analyses (`benchmarks/bench_text.py`, issue 10)", "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPU, torch threads {args.threads}; machine "
        f"load average {load0:.1f} at the start and {load1:.1f} at the end (2 logical cores shared with "
        "other jobs: the times are upper bounds). `tokens/s` counts corpus tokens; an all-head ablation "
        "runs every token once per head plus a clean pass and a pass for the means.", "",
        "| case | tokens | patchlab wall (s) | CPU (s) | tokens/s (wall) | one hooked pass per head (TL) | speed-up | path |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, n, t, cpu, tps, naive, ratio, path in rows:
        lines.append(f"| {name} | {n} | {t:.1f} | {cpu:.1f} | {tps:.1f} | {naive} | {ratio} | {path} |")
    lines += ["", "The goal for the first row is under 30 s on this CPU.", END]
    text = "\n".join(lines)
    print(text)
    if args.write:
        doc = args.write.read_text() if args.write.exists() else "# Benchmarks\n"
        if START in doc and END in doc:
            doc = doc[:doc.index(START)] + text + doc[doc.index(END) + len(END):]
        else:
            doc = doc.rstrip("\n") + "\n\n" + text + "\n"
        args.write.write_text(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
