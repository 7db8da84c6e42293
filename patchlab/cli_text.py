"""Command line for circuits from the weights and from text: ``patchlab weights``, ``patchlab text``.

Registered by :mod:`patchlab.cli` (``add_parsers`` and ``COMMANDS``); shares its model options,
progress bar and output-folder helpers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from patchlab.core.errors import InputError

CIRCUITS = ("direct", "ov", "qk", "pos_qk", "composition")


def _corpus_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("text (one of; default: 200 sampled toy documents for the embedded models)")
    g.add_argument("--file", type=Path, help=".txt (one document per line) or .jsonl (a \"text\" field per line)")
    g.add_argument("--text", action="append", help="a document (repeat for several)")
    g.add_argument("--toy", type=int, metavar="N", help="N documents sampled from the toy language")
    g.add_argument("--seed", type=int, default=0, help="seed for --toy sampling (default 0)")
    p.add_argument("--max-tokens", type=int, default=None, help="stop reading the corpus after this many tokens")
    p.add_argument("--batch-tokens", type=int, default=4096, help="tokens per forward pass (default 4096)")
    p.add_argument("--out", "-o", type=Path, help="folder for CSV, JSON and HTML")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def add_parsers(sub: Any, model_args: Any) -> None:
    """Add ``weights`` and ``text`` to the ``patchlab`` subcommands."""
    we = sub.add_parser("weights", help="circuits read from the weights: direct path, OV/QK, composition")
    model_args(we)
    we.add_argument("circuit", nargs="?", default="direct", choices=CIRCUITS,
                    help="direct (W_E W_U), ov, qk, pos_qk (one head), composition (all heads); default direct")
    we.add_argument("--layer", type=int, default=0)
    we.add_argument("--head", type=int, default=0)
    we.add_argument("--tokens", nargs="+", help="tokens for the token axes (real models); toy models: whole vocabulary")
    we.add_argument("--mode", default="k", choices=["q", "k", "v"], help="composition mode (default k)")
    we.add_argument("--top", type=int, default=10, help="entries to print (default 10)")
    we.add_argument("--allow-raw", action="store_true", help="read unfolded weights of a --processing raw model")
    we.add_argument("--out", "-o", type=Path, help="folder for weights.csv and weights.json")

    te = sub.add_parser("text", help="analyses over text: losses, ablate, compare, token-ablation, top-examples")
    tsub = te.add_subparsers(dest="text_command", parser_class=sub._parser_class)
    tsub.required = True
    lo = tsub.add_parser("losses", help="per-token loss")
    ab = tsub.add_parser("ablate", help="ablate each head / MLP over the text: mean change of loss with CI")
    ab.add_argument("--components", default="heads", choices=["heads", "mlps", "all"])
    ab.add_argument("--method", default="mean", choices=["mean", "zero", "resample"])
    co = tsub.add_parser("compare", help="per token max(logp_B, floor) - max(logp_A, floor): where --model-b beats --model")
    co.add_argument("--model-b", required=True, help="model B (same tokenizer as --model)")
    co.add_argument("--floor", type=float, default=-5.0)
    co.add_argument("--top", type=int, default=20)
    ta = tsub.add_parser("token-ablation", help="remove each earlier token in turn; effect on a target at a position")
    ta.add_argument("--position", type=int, default=-1, help="token index (BOS = 0; default -1 = last)")
    ta.add_argument("--target", required=True, help="'logprob: TOKEN', 'logit: TOKEN', 'head: L1H3' or 'neuron: L0N12'")
    ta.add_argument("--method", default="delete", choices=["delete", "replace", "mask"])
    tx = tsub.add_parser("top-examples", help="top activating positions of a neuron or head")
    unit = tx.add_mutually_exclusive_group(required=True)
    unit.add_argument("--neuron", help="e.g. L0N12")
    unit.add_argument("--head", help="e.g. L1H3 (value: the norm of the head's output)")
    tx.add_argument("-k", type=int, default=20)
    for p in (lo, ab, co, ta, tx):
        model_args(p)
        if p is ta:
            p.add_argument("--text", required=True, help="the text")
            p.add_argument("--out", "-o", type=Path, help="folder for CSV, JSON and HTML")
        else:
            _corpus_args(p)


def _unit(s: str, letter: str) -> tuple[int, int]:
    import re

    m = re.fullmatch(rf"\s*L?(\d+)\s*{letter}?\s*(\d+)\s*", s, re.IGNORECASE)
    if not m:
        raise InputError(f"Cannot read {s!r}: write it like L1{letter}3.")
    return int(m.group(1)), int(m.group(2))


def _corpus(args, model) -> Any:
    from patchlab.engine.text.corpus import as_corpus, toy_corpus
    from patchlab.engine.weights import toy_groups

    given = [x for x in (args.file, args.text, args.toy) if x]
    if len(given) > 1:
        raise InputError("Give only one of --file, --text and --toy.")
    if args.file:
        return as_corpus(args.file)
    if args.text:
        return as_corpus(args.text)
    if args.toy is not None or toy_groups(model) is not None:
        return toy_corpus(args.toy if args.toy is not None else 200, seed=args.seed)
    raise InputError("Give the text: --file corpus.txt, --text '...' (repeatable), or --toy N for the embedded models.")


def _drive(gen, quiet: bool):
    """Run a text generator with a progress line (phase, fraction, ETA); return its result."""
    show = not quiet and sys.stderr is not None
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            if show:
                sys.stderr.write("\n")
            return stop.value
        if show:
            eta = f"{ev.eta:5.1f}s" if ev.eta == ev.eta else "  ?"
            sys.stderr.write(f"\r{ev.phase:12s} {100 * ev.fraction:5.1f}%  {ev.tokens} tokens  "
                             f"{ev.elapsed:5.1f}s  eta {eta}")
            sys.stderr.flush()


def _save(res, out: Path | None, stem: str, html: bool = True) -> None:
    if out is None:
        return
    from patchlab.cli import _out_dir

    out = _out_dir(out)
    res.save_csv(out / f"{stem}.csv")
    res.save_json(out / f"{stem}.json")
    written = [f"{stem}.csv", f"{stem}.json"]
    if html and hasattr(res, "save_html"):
        res.save_html(out / f"{stem}.html")
        written.append(f"{stem}.html")
    print(f"wrote {', '.join(str(out / w) for w in written)}")


def cmd_weights(args) -> int:
    from patchlab.cli import _load, _out_dir
    from patchlab.engine import weights as w

    if args.out:
        _out_dir(args.out)
    model = _load(args)
    raw = {"allow_raw": args.allow_raw}
    if args.circuit == "composition":
        res = w.composition_scores(model, args.mode, **raw)
        print(f"{args.mode.upper()}-composition scores; random baseline mean {res.baseline_mean:.3f}, "
              f"99th percentile {res.baseline_p99:.3f}")
        for s, d, v in res.ranked(args.top):
            print(f"  {s} -> {d}: {v:.3f}" + ("  (above the baseline's p99)" if v > res.baseline_p99 else ""))
    else:
        if args.circuit == "direct":
            res = w.direct_path(model, args.tokens, **raw)
        elif args.circuit == "pos_qk":
            res = w.positional_qk(model, args.layer, args.head, **raw)
        else:
            fn = w.ov_circuit if args.circuit == "ov" else w.qk_circuit
            res = fn(model, args.layer, args.head, args.tokens, **raw)
        print(f"{res.title}: {res.values.shape[0]} x {res.values.shape[1]} "
              f"({res.meta['row_axis']} x {res.meta['col_axis']}), processing {res.meta['processing']}")
        spans = res.group_spans()
        rows = [i for _, a, b in spans for i in range(a, min(b, a + 2))][:args.top] if len(spans) > 1 else range(min(args.top, len(res.row_labels)))
        for i in rows:
            top = ", ".join(f"{t!r} {v:+.2f}" for t, v in res.row_top(res.row_labels[i], 3))
            print(f"  [{res.row_groups[i]}] {res.row_labels[i]!r}: {top}")
    _save(res, args.out, "weights", html=False)
    return 0


def cmd_text(args) -> int:
    from patchlab.cli import _load, _out_dir
    from patchlab.engine.text import ablate, losses, token_ablation, top_examples

    if getattr(args, "batch_tokens", 1) < 1 or (getattr(args, "max_tokens", None) or 1) < 1:
        raise InputError("--batch-tokens and --max-tokens must be at least 1.")
    if args.out:
        _out_dir(args.out)
    model = _load(args)
    kw = {} if args.text_command == "token-ablation" else {
        "batch_tokens": args.batch_tokens, "max_tokens": args.max_tokens}
    cmd = args.text_command
    if cmd == "losses":
        res = _drive(losses.iter_token_losses(model, _corpus(args, model), **kw), args.quiet)
        print(f"mean loss {res.mean():.4f} nats over {res.meta['n_tokens']} tokens in {res.meta['n_docs']} documents")
        _print_hits(res.top(10), "highest-loss tokens")
    elif cmd == "ablate":
        res = _drive(ablate.iter_ablate(model, _corpus(args, model), components=args.components,
                                        method=args.method, **kw), args.quiet)
        print(f"{args.method} ablation of {args.components}: clean loss {res.meta['clean_loss']:.4f} over "
              f"{res.meta['n_tokens']} tokens; mean loss change (95% CI):")
        for label, v, lo, hi in res.ranked()[:10]:
            print(f"  {label:8s} {v:+.4f}  [{lo:+.4f}, {hi:+.4f}]")
        if args.out:
            top = res.ranked()[0][0]
            res.drilldown(top).save_html(args.out / "ablation_top_component.html")
            print(f"wrote {args.out / 'ablation_top_component.html'} (per-token change for {top})")
    elif cmd == "compare":
        corpus = _corpus(args, model)
        from patchlab.engine.loading import load_model

        print(f"loading {args.model_b}...", file=sys.stderr)
        model_b = load_model(args.model_b, device=args.device, dtype=args.dtype, processing=args.processing,
                             trust_remote_code=args.trust_remote_code)
        res = _drive(losses.iter_compare_models(model, model_b, corpus, floor=args.floor, **kw), args.quiet)
        counts, edges = res.histogram(10)
        print(f"{res.meta['value_label']} (B = {res.meta['model_b']}, A = {res.meta['model_a']}): mean "
              f"{res.mean():+.4f} over {res.meta['n_tokens']} tokens")
        print("  histogram: " + ", ".join(f"[{a:+.1f},{b:+.1f}): {c}" for a, b, c in zip(edges, edges[1:], counts)))
        _print_hits(res.top(args.top), "tokens where B beats A most")
    elif cmd == "token-ablation":
        res = token_ablation.token_ablation(model, args.text, args.position, args.target, method=args.method)
        d = res.docs[0]
        print(f"{res.meta['target']} at position {res.meta['position']} ({res.meta['position_token']!r}): "
              f"{res.meta['base_value']:+.4f}; change when each earlier token is {args.method}d:")
        for i, (t, v) in enumerate(zip(d.tokens, d.values)):
            if v == v:
                print(f"  {i:3d} {t!r:14s} {v:+.4f}")
    else:
        unit = {"neuron": _unit(args.neuron, "N")} if args.neuron else {"head": _unit(args.head, "H")}
        res = _drive(top_examples.iter_top_examples(model, _corpus(args, model), k=args.k, **unit, **kw), args.quiet)
        print(f"top {len(res.examples)} positions of {res.meta['unit']} ({res.value_label}) over {res.meta['n_tokens']} tokens:")
        for r, e in enumerate(res.examples, 1):
            ctx = "".join(_sp(e.tokens[:e.focus])) + " [" + e.token + "] " + "".join(_sp(e.tokens[e.focus + 1:]))
            print(f"  {r:3d} {e.value:+.4f}  doc {e.doc} pos {e.pos}: {ctx.strip()}")
    if res.meta.get("windows_note"):
        print(f"note: {res.meta['windows_note']}")
    if res.meta.get("cancelled"):
        print("note: stopped early; the result covers the documents read so far")
    _save(res, args.out, cmd.replace("-", "_"))
    return 0


def _sp(tokens):
    return [t if t[:1].isspace() else " " + t for t in tokens]


def _print_hits(hits, what: str) -> None:
    print(f"  {what}:")
    for h in hits:
        ctx = "".join(_sp(h.before)) + " [" + h.token + "] " + "".join(_sp(h.after))
        print(f"    {h.value:+.3f}  doc {h.doc} pos {h.pos}: {ctx.strip()}")


COMMANDS = {"weights": cmd_weights, "text": cmd_text}
