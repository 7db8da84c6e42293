"""Benchmark: patchlab exact and attribution patching vs TransformerLens's per-cell loop.

Builds a GPT-2-small-shaped model with random weights (12 layers, 12 heads, d_model 768,
vocab 50257) in a temporary folder, then for each target and prompt length times
TransformerLens's ``get_act_patch_*`` (on a sample of cells, extrapolated, when the full loop
is too slow), patchlab's exact sweep and its attribution estimate. Prints a markdown table.

Run: ``.venv/bin/python benchmarks/bench_patching.py [--quick] [--no-prefix-skip] [--write docs/benchmarks.md]``
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

WORDS = "When John and Mary went to the store , John gave a drink to".split()
CORPUS = [
    "When John and Mary went to the store, John gave a drink to Mary.",
    "When Mary and John went to the park, Mary gave a book to John.",
    "The cat sat on the mat. Alice sees Bob at the beach. Tom and Anna walk home.",
]
TARGETS_16 = ["resid_pre", "attn_out", "mlp_out", "attn_head_out_all_pos", "attn_head_out_by_pos",
              "attn_head_q_all_pos", "attn_head_k_all_pos", "attn_head_v_all_pos",
              "attn_head_pattern_all_pos"]
# every timing is the best of this many runs (TL's on the same sampled cells)
REPEATS = 2
TARGETS_64 = ["resid_pre", "attn_head_out_all_pos", "attn_head_out_by_pos"]


def build_model(folder: Path, n_layers: int = 12) -> Path:
    """Save a random GPT-2-small-shaped model with a small BPE tokenizer into ``folder``
    (``n_layers`` fewer than 12: a quick check)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    fast_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                       eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(0)
    # the full GPT-2 vocabulary keeps the unembedding cost realistic
    cfg = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=n_layers, n_head=12,
                     bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    fast_tok.save_pretrained(folder)
    return folder


def make_pair(model, n_tokens: int):
    """A clean/corrupted pair of exactly ``n_tokens`` tokens (BOS included)."""
    import patchlab

    words: list[str] = []
    i = 0
    while True:
        words.append(WORDS[i % len(WORDS)])
        i += 1
        text = " ".join(words)
        n = model.to_tokens(text).shape[-1]
        if n == n_tokens and words[-1] == "to":
            break
        if n > n_tokens:
            words = words[1:]
            i = i  # keep going with a shorter head
    # the corruption swaps the last subject, so late positions differ
    idx = len(words) - 1 - words[::-1].index("John")
    corrupted = words.copy()
    corrupted[idx] = "Mary"
    return patchlab.PromptPair(" ".join(words), " ".join(corrupted), " Mary", " John")


class PeakRSS:
    """Peak resident memory above the starting level, sampled every 5 ms."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self.start = self.rss()
        self.peak = self.start
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def matmul_peak() -> float:
    """Best FLOP/s of a float32 matmul shaped like a batched MLP layer."""
    a, b = torch.randn(1024, 768), torch.randn(768, 3072)
    best = float("inf")
    # many tries: on a shared machine a few short runs can all land on someone else's burst
    for _ in range(50):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024 * 768 * 3072 / best


def tl_reference(model, pair, target: str, max_cells: int):
    """TransformerLens's loop: seconds for all cells (extrapolated) and values on the measured ones."""
    import pandas as pd
    import transformer_lens.patching as tlp

    from patchlab.engine.tokens import tokenize_pair

    tp = tokenize_pair(model, pair)
    fn = getattr(tlp, f"get_act_patch_{target}")
    names = fn.keywords["index_axis_names"]
    act = fn.keywords["activation_name"]
    sizes = {"layer": model.cfg.n_layers, "pos": tp.n_pos, "head_index": model.cfg.n_heads,
             "head": model.cfg.n_heads, "dest_pos": tp.n_pos, "src_pos": tp.n_pos}
    if act in ("k", "v") and model.cfg.n_key_value_heads:
        sizes["head_index"] = sizes["head"] = model.cfg.n_key_value_heads
    cells = list(itertools.product(*(range(sizes[n]) for n in names)))
    rng = np.random.default_rng(0)
    pick = cells if len(cells) <= max_cells else [cells[i] for i in sorted(rng.choice(len(cells), max_cells, replace=False))]
    with torch.no_grad():
        _, cache = model.run_with_cache(tp.clean)

        def metric(logits):
            return logits[0, -1, tp.answer_id] - logits[0, -1, tp.wrong_id]

        df = pd.DataFrame(pick, columns=list(names))
        dt = float("inf")
        # best of REPEATS, as for patchlab: the machine is shared and one-off stalls are common
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            out = tlp.generic_activation_patch(model, tp.corrupted, cache, metric, fn.keywords["patch_setter"],
                                               act, index_df=df)
            dt = min(dt, time.perf_counter() - t0)
    per_cell = dt / len(pick)
    values = {c: float(out[i]) for i, c in enumerate(pick)}  # measured cells come back flattened
    return per_cell * len(cells), len(pick), len(cells), values


def run_case(model, pair, target: str, max_cells: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    import patchlab

    tl_s, measured, total, ref = tl_reference(model, pair, target, max_cells)
    # warm-up: weight extraction is cached per model, so a cheap target suffices
    patchlab.patch(model, pair, target="attn_out", metric="logit_diff", engine="fast")
    fast_s = float("inf")
    for i in range(REPEATS):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            res = patchlab.patch(model, pair, target=target, metric="logit_diff", engine="fast")
            fast_s = min(fast_s, time.perf_counter() - t0)
        if i == 0:
            mem_mib = mem.mib  # the first run's growth (later runs reuse freed memory)
        if fast_s > 60:  # long sweeps: one run is enough to time
            break
    assert res.meta["engine_path"] == "fast-torch", res.meta.get("fallback_reason")
    attr_s = float("inf")
    from patchlab.engine import attribution_pass

    for _ in range(REPEATS):
        attribution_pass.clear_cache()  # time the pass, not a cache hit of the previous repeat
        t0 = time.perf_counter()
        patchlab.patch(model, pair, target=target, metric="logit_diff", method="attribution")
        attr_s = min(attr_s, time.perf_counter() - t0)
    diff = max(abs(float(res.values[c]) - v) for c, v in ref.items())
    flops = None
    if fast_s < 40:
        with FlopCounterMode(display=False) as fc:
            patchlab.patch(model, pair, target=target, metric="logit_diff", engine="fast")
        flops = fc.get_total_flops()
    return {
        "target": target, "tokens": pair_tokens(model, pair), "tl_s": tl_s, "measured": measured,
        "total": total, "fast_s": fast_s, "attr_s": attr_s, "diff": diff, "mem_mib": mem_mib,
        "gflops": None if flops is None else flops / fast_s / 1e9,
    }


def pair_tokens(model, pair) -> int:
    return int(model.to_tokens(pair.clean).shape[-1])


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run)"
    return (f"CPU {cpu} ({os.cpu_count()} logical cores), torch threads {torch.get_num_threads()}, "
            f"torch {torch.__version__}, transformer-lens {version('transformer-lens')}, "
            f"Python {platform.python_version()}, GPU {gpu}")


def table(rows: list[dict]) -> str:
    head = ("| target | tokens | TL (s) | patchlab exact (s) | speed-up | attribution (s) | vs TL | "
            "max abs diff | peak mem (MiB) | GFLOP/s |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        tl = f"{r['tl_s']:.1f}" + ("" if r["measured"] == r["total"] else f" (extrap. {r['measured']}/{r['total']} cells)")
        gf = "n/a" if r["gflops"] is None else f"{r['gflops']:.0f}"
        lines.append(
            f"| `{r['target']}` | {r['tokens']} | {tl} | {r['fast_s']:.2f} | {r['tl_s'] / r['fast_s']:.1f}x | "
            f"{r['attr_s']:.2f} | {r['tl_s'] / r['attr_s']:.0f}x | {r['diff']:.1e} | {r['mem_mib']:.0f} | {gf} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 tokens, three targets, few TL cells (smoke test)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tl-cells", type=int, default=None, help="TL cells measured per case (default 32; quick 6)")
    ap.add_argument("--write", default=None, help="also write the table into this markdown file")
    ap.add_argument("--no-prefix-skip", action="store_true",
                    help="recompute cells inside the prompts' common prefix too (pure engine throughput)")
    ap.add_argument("--targets", default=None, help="comma-separated targets (default: the issue's list)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import patchlab
    from patchlab.engine.fast import backend

    backend.SKIP_SHARED_PREFIX = not args.no_prefix_skip
    max_cells = args.tl_cells or (6 if args.quick else 32)
    if args.quick:
        cases = [(16, t) for t in ("resid_pre", "attn_head_out_all_pos", "attn_head_out_by_pos")]
    else:
        cases = [(16, t) for t in TARGETS_16] + [(64, t) for t in TARGETS_64]
    if args.targets:
        wanted = args.targets.split(",")
        cases = [c for c in cases if c[1] in wanted]
    peak = matmul_peak()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model = patchlab.load_model(str(build_model(Path(tmp))), device="cpu")
        print(f"built and loaded the model in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        pairs, prefix = {}, {}
        for n, target in cases:
            if n not in pairs:
                pairs[n] = make_pair(model, n)
                prefix[n] = backend.shared_prefix(model.to_tokens(pairs[n].clean), model.to_tokens(pairs[n].corrupted))
            row = run_case(model, pairs[n], target, max_cells)
            rows.append(row)
            peak = max(peak, matmul_peak())  # re-measured between cases: keep the best seen
            print(f"{target} @ {n}: TL {row['tl_s']:.1f}s fast {row['fast_s']:.2f}s "
                  f"attr {row['attr_s']:.2f}s diff {row['diff']:.1e}", file=sys.stderr)
    skip = ("off: every cell is recomputed" if args.no_prefix_skip else
            "on: cells inside the prompts' common prefix take the unpatched value without a forward pass")
    text = (f"Machine: {machine()}. Matmul peak (1024x768 @ 768x3072, float32, best seen during the run): {peak / 1e9:.0f} GFLOP/s. "
            f"Prompts first differ at position {', '.join(f'{pos} of {n}' for n, pos in prefix.items())}; "
            f"shared-prefix skip {skip}.\n\n" + table(rows))
    print(text)
    if args.write:
        Path(args.write).write_text(
            "# Benchmarks\n\nLatest run of `benchmarks/bench_patching.py`"
            + (" --quick" if args.quick else "") + (" --no-prefix-skip" if args.no_prefix_skip else "")
            + f" ({time.strftime('%Y-%m-%d')}).\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
