"""Benchmark the fast path's plumbing: many pairs, peak memory, cancel latency.

GPT-2-small-shaped random model (as ``bench_patching.py``), CPU. Prints markdown tables.

- ``pairs``: 1, 8 and 64 distinct pairs of 16 tokens, ``resid_pre`` and
  ``attn_head_out_all_pos``: seconds per pair and peak resident memory (whole process, and
  growth above the level before the call); one line per row as it goes. ``--targets``,
  ``--counts``, ``--tokens``, ``--layers`` make a small run; ``--profile N`` profiles the
  last count.
- ``memory``: peak resident memory of a by-position head sweep at 64 tokens on the GPT-2-small
  shape and on a ~1B-parameter random Llama-shaped model (float32), against the model's size.
  The 1B sweep stops after its first forward pass (chunks run largest first, so that one holds
  the sweep's peak); the GPT-2-small one after two layer rows.
- ``cancel``: seconds from setting the stop flag at a random moment of an
  ``attn_head_out_all_pos`` / ``attn_head_out_by_pos`` sweep (``--tokens``, default 64) to
  the sweep returning (goal: 0.5 s); one line per stop as it goes.

Run: ``.venv/bin/python benchmarks/bench_fast_paths.py pairs|memory|cancel [--big] [--tokens N] [--repeats N]``
Quick checks: ``pairs --counts 1,8 --layers 2 --repeats 1``; ``cancel --tokens 16 --repeats 2``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import bench_patching as bp  # noqa: E402
import torch  # noqa: E402

NAMES = ["John", "Mary", "Tom", "Anna", "Alice", "Bob"]
PLACES = ["store", "park", "beach", "mat", "home"]
OBJECTS = ["drink", "book", "cat", "mat"]


def rss() -> int:
    return bp.PeakRSS.rss()


def many_pairs(model, n: int, n_tokens: int = 16):
    """``n`` distinct pairs of ``n_tokens`` tokens (IOI-like: the corruption swaps the last subject).

    The benchmark's base pair with its names, place and object replaced, in a fixed shuffled
    order of a finite list of candidates (the old generator looped forever once its 30
    distinct clean prompts were used up). Raises ``SystemExit`` when fewer than ``n`` exist.
    """
    import patchlab

    base = bp.make_pair(model, n_tokens)
    cw, kw = base.clean.split(" "), base.corrupted.split(" ")
    cands = list(itertools.product(itertools.permutations(NAMES, 2), PLACES, OBJECTS))
    random.Random(0).shuffle(cands)

    def one(word: str) -> bool:
        return model.to_tokens(" " + word, prepend_bos=False).shape[-1] == 1

    out, seen = [], set()
    for (a, b), place, obj in cands:
        if not (one(a) and one(b)):
            continue
        swap = {"John": a, "Mary": b, "store": place, "drink": obj}
        clean = " ".join(swap.get(w, w) for w in cw)
        corrupted = " ".join(swap.get(w, w) for w in kw)
        if (clean, corrupted) in seen:
            continue
        seen.add((clean, corrupted))
        if model.to_tokens(clean).shape[-1] != n_tokens or model.to_tokens(corrupted).shape[-1] != n_tokens:
            continue
        out.append(patchlab.PromptPair(clean, corrupted, f" {b}", f" {a}"))
        if len(out) == n:
            return out
    raise SystemExit(f"only {len(out)} distinct pairs of {n_tokens} tokens could be made; ask for fewer")


def load_small(tmp: Path, n_layers: int = 12):
    import patchlab

    return patchlab.load_model(str(bp.build_model(tmp, n_layers=n_layers)), device="cpu")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def cmd_pairs(args) -> None:
    import cProfile
    import pstats

    import patchlab

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    counts = _ints(args.counts)
    print("| target | pairs | sweep (s) | s / pair | vs 1 pair | peak RSS (MiB) | vs 1 pair | growth (MiB) |\n"
          "|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_small(Path(tmp), args.layers)
        pairs = many_pairs(model, max(counts), args.tokens)
        for target in targets:
            # warm-up: weights, and the once-per-model probe of this target's hooks
            patchlab.patch(model, pairs[0], target=target, metric="logit_diff", engine="fast")
            single = None
            for n in counts:
                best, peak_abs, grow = float("inf"), 0, 0
                for _ in range(args.repeats if n < 64 else 1):
                    prof = cProfile.Profile() if args.profile and n == counts[-1] else None
                    with bp.PeakRSS() as mem:
                        t0 = time.perf_counter()
                        if prof:
                            prof.enable()
                        res = patchlab.patch(model, pairs[:n], target=target, metric="logit_diff", engine="fast")
                        if prof:
                            prof.disable()
                        best = min(best, time.perf_counter() - t0)
                    peak_abs, grow = max(peak_abs, mem.peak), max(grow, mem.peak - mem.start)
                    if prof:
                        print(f"\n# profile: {target}, {n} pairs", file=sys.stderr)
                        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
                assert res.meta["engine_path"] == "fast-torch" and res.meta["complete"], res.meta["fallback_reason"]
                per = best / n
                single = single or (per, peak_abs)
                print(f"| `{target}` | {n} | {best:.2f} | {per:.3f} | {per / single[0]:.2f}x | "
                      f"{peak_abs / 2**20:.0f} | {peak_abs / single[1]:.2f}x | {grow / 2**20:.0f} |", flush=True)


def build_big(folder: Path) -> Path:
    """A ~1B-parameter random Llama-shaped model (TinyLlama-like, 20 layers) in float32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=20,
                      num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=512,
                      bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02) if p.dim() > 1 else p.fill_(1.0)
    out = folder / "big"
    model.save_pretrained(out)
    del model
    return out


def _peak_of(model, pair, target: str, stop_after_chunks: int) -> tuple[float, float, int]:
    """Seconds, peak RSS (bytes) and chunks run of a sweep stopped after a few forward passes."""
    import patchlab
    from patchlab.engine.fast import backend

    done = {"n": 0}
    real = backend.run_cells

    def counted(*a, **k):
        out = real(*a, **k)
        done["n"] += 1
        return out

    backend.run_cells = counted
    try:
        with bp.PeakRSS() as mem:
            t0 = time.perf_counter()
            res = patchlab.patch(model, pair, target=target, metric="logit_diff", engine="fast",
                                 stop=lambda: done["n"] >= stop_after_chunks)
            dt = time.perf_counter() - t0
    finally:
        backend.run_cells = real
    assert res.meta["engine_path"] == "fast-torch", res.meta["fallback_reason"]
    return dt, mem.peak, done["n"]


def cmd_memory(args) -> None:
    import patchlab
    from patchlab.engine.fast import backend

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small_dir = bp.build_model(tmp / "small")
        cases = [("GPT-2 small shape", small_dir, 4)]
        if args.big:
            big = build_big(tmp)
            for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                if (small_dir / f).exists():
                    (big / f).write_bytes((small_dir / f).read_bytes())
            cases.append(("~1B Llama shape", big, 1))
        for name, folder, chunks in cases:
            before = rss()
            model = patchlab.load_model(str(folder), device="cpu")
            params = sum(p.numel() * p.element_size() for p in model.parameters())
            loaded = rss()
            pair = many_pairs(model, 1, 64)[0]
            w = backend.weights_for(model)
            dt, peak, ran = _peak_of(model, pair, "attn_head_out_by_pos", chunks)
            rows.append(f"| {name} | {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B | "
                        f"{params / 2**30:.2f} | {w.copied_bytes / 2**20:.1f} | {(loaded - before) / 2**30:.2f} | "
                        f"{peak / 2**30:.2f} | {(peak - before - params) / 2**30:.2f} | {ran} | {dt:.0f} |")
            print(rows[-1], file=sys.stderr)
            del model, w
            backend._WEIGHTS.clear()
    print("| model | params | weights (GiB) | fast-path copies (MiB) | RSS after load (GiB, above start) | "
          "peak RSS in sweep (GiB) | peak - start - weights (GiB) | forward passes run | s |\n"
          "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))


def cmd_cancel(args) -> None:
    """Stop each sweep at a random moment between 20 % and 80 % of its uncancelled duration
    (timed once per target first), so every stop lands inside the sweep; one line per stop."""
    import patchlab

    rng = random.Random(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = load_small(Path(tmp))
        pair = many_pairs(model, 1, args.tokens)[0]
        patchlab.patch(model, pair, target="attn_out", metric="logit_diff", engine="fast")
        print(f"GPT-2-small shape, {args.tokens} tokens, {torch.get_num_threads()} torch threads", flush=True)
        for target in ("attn_head_out_all_pos", "attn_head_out_by_pos"):
            t0 = time.perf_counter()
            patchlab.patch(model, pair, target=target, metric="logit_diff", engine="fast")
            full = time.perf_counter() - t0
            print(f"  `{target}`: uncancelled sweep {full:.2f} s", flush=True)
            lat = []
            for k in range(args.repeats):
                flag = threading.Event()
                stamp = {}

                def setter(delay, flag=flag, stamp=stamp):
                    time.sleep(delay)
                    stamp["t"] = time.perf_counter()
                    flag.set()

                delay = rng.uniform(0.2, 0.8) * full
                th = threading.Thread(target=setter, args=(delay,))
                th.start()
                res = patchlab.patch(model, pair, target=target, metric="logit_diff", engine="fast", stop=flag)
                end = time.perf_counter()
                th.join()
                if res.meta["cancelled"]:
                    lat.append(end - stamp["t"])
                    print(f"  `{target}` stop {k + 1}: set at {delay:.2f} s, returned {lat[-1]:.3f} s later",
                          flush=True)
                else:
                    print(f"  `{target}` stop {k + 1}: the sweep ended before the stop ({delay:.2f} s)", flush=True)
            if lat:
                rows.append(f"| `{target}` | {args.tokens} | {len(lat)} | {max(lat):.3f} | {sorted(lat)[len(lat) // 2]:.3f} |")
            else:
                rows.append(f"| `{target}` | {args.tokens} | 0 | n/a | n/a |")
            print(rows[-1], flush=True)
    print("| target | tokens | cancels | max latency (s) | median (s) |\n|---|---|---|---|---|\n" + "\n".join(rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["pairs", "memory", "cancel"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--big", action="store_true", help="memory: also the ~1B-parameter model (~4 GiB, minutes)")
    ap.add_argument("--targets", default="resid_pre,attn_head_out_all_pos", help="pairs: comma-separated targets")
    ap.add_argument("--counts", default="1,8,64", help="pairs: numbers of pairs, the first is the reference")
    ap.add_argument("--tokens", type=int, default=None,
                    help="prompt length in tokens, BOS included (pairs: default 16; cancel: default 64, quick check 16)")
    ap.add_argument("--layers", type=int, default=12, help="pairs: layers of the GPT-2-small shape (fewer: a quick check)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="pairs: cProfile the last count's sweep and print its top N functions (stderr)")
    args = ap.parse_args(argv)
    if args.tokens is None:
        args.tokens = 16 if args.what == "pairs" else 64
    torch.set_num_threads(args.threads)
    {"pairs": cmd_pairs, "memory": cmd_memory, "cancel": cmd_cancel}[args.what](args)
    print(f"\nMachine: {bp.machine()}; load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
