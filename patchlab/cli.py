"""Command line: ``patchlab`` (the window), ``sweep``, ``decompose``, ``models``, ``screenshot``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from patchlab import cli_text
from patchlab._version import __version__
from patchlab.core.errors import InputError, PatchlabError
from patchlab.core.metrics import DIRECTIONS, METHODS, METRICS
from patchlab.core.pairs import PromptPair
from patchlab.core.targets import TARGETS

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, status 2
        self.exit(EXIT_USAGE, f"patchlab: error: {message}\n(see `{self.prog} --help`)\n")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default=None,
                   help="embedded model name (see `patchlab models`), local folder, or Hub id; default: the embedded default")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--dtype", default=None, help="float32 (default), float16, bfloat16")
    p.add_argument("--processing", default="compat", choices=["compat", "raw"],
                   help="compat: TransformerLens compatibility mode (default); raw: Hugging Face weights")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the Hub (off by default)")
    _split_args(p)


def _split_args(p: argparse.ArgumentParser) -> None:
    """Multi-device loading (issue 13): passed through to TransformerLens's boot_transformers."""
    p.add_argument("--device-map", default=None,
                   help="split the model over devices: auto, balanced, sequential (replaces --device)")
    p.add_argument("--max-memory", default=None,
                   help="per-device budget for --device-map, e.g. 0=20GiB,1=20GiB,cpu=64GiB")


def _parse_max_memory(text: str | None) -> dict[Any, str] | None:
    if not text:
        return None
    budget: dict[Any, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"--max-memory: {part!r} is not DEVICE=SIZE (e.g. 0=20GiB,cpu=64GiB).")
        key = key.strip()
        budget[int(key) if key.isdigit() else key] = value.strip()
    return budget


def _say_engine(meta: dict[str, Any]) -> None:
    """Which exact engine ran and, if the fast one was not used, why (stderr; issue 13)."""
    line = f"engine: {meta.get('engine_path', '?')}"
    if meta.get("fallback_reason"):
        line += f" (the fast path was not used: {meta['fallback_reason']})"
    print(line, file=sys.stderr)


def _pair_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("prompts (default: the model's first built-in example)")
    g.add_argument("--clean", help="clean prompt")
    g.add_argument("--corrupted", help="corrupted prompt (same number of tokens)")
    g.add_argument("--answer", help="correct next token for the clean prompt, e.g. ' Mary'")
    g.add_argument("--wrong", help="competing token, e.g. ' John'")
    g.add_argument("--pairs", type=Path, help="pairs file: CSV/TSV with columns clean, corrupted, answer, wrong "
                   "(optional name, group), or JSONL with one such object per line")
    g.add_argument("--example", help="name of a built-in example (see `patchlab models --examples`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="patchlab", description="Activation patching for transformer language models. "
                     "Without a command, opens the desktop app.")
    parser.add_argument("--version", action="version", version=f"patchlab {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    gui = sub.add_parser("gui", help="open the desktop app (the default)")
    gui.add_argument("session", nargs="?", help=".patchlab session file to open")

    sw = sub.add_parser("sweep", help="run a patching sweep and write CSV + JSON")
    _model_args(sw)
    _pair_args(sw)
    sw.add_argument("--target", "-t", default="resid_pre", choices=list(TARGETS), metavar="TARGET",
                    help=f"what to patch: {', '.join(TARGETS)} (default resid_pre)")
    sw.add_argument("--direction", default="denoise", choices=list(DIRECTIONS),
                    help="denoise: clean activations into the corrupted run (default); noise: the reverse")
    sw.add_argument("--metric", default="logit_diff_recovered", choices=list(METRICS))
    sw.add_argument("--method", default="exact", choices=list(METHODS))
    sw.add_argument("--engine", default="auto", choices=["auto", "fast", "generic"], help=argparse.SUPPRESS)
    sw.add_argument("--batch-size", type=int, default=None, help="cells per forward pass (default: from free memory)")
    sw.add_argument("--out", "-o", type=Path, help="folder for result.csv and result.json")
    sw.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    _script_args(sw)

    de = sub.add_parser("decompose", help="direct logit attribution and logit lens for a pair")
    _model_args(de)
    _pair_args(de)
    de.add_argument("--out", "-o", type=Path, help="folder for decompose.csv and decompose.json")

    mo = sub.add_parser("models", help="list the embedded models and their cards")
    mo.add_argument("--examples", action="store_true", help="also list each model's built-in examples")

    from patchlab import cli_paths  # noqa: PLC0415 - `paths` and `neurons` live in their own module

    cli_paths.add_parsers(sub)

    sc = sub.add_parser("screenshot", help="run the first example off screen and save a PNG of the window")
    sc.add_argument("out", type=Path, help="PNG file to write")
    sc.add_argument("--view", default="heatmap", choices=["heatmap", "decompose", "readouts", "scatter"])
    cli_text.add_parsers(sub, _model_args)  # weights, text
    return parser


# -- helpers -------------------------------------------------------------------------------
def _load(args) -> Any:
    from patchlab.engine.loading import load_model, model_info

    print(f"loading {args.model or 'the embedded default model'}...", file=sys.stderr)
    model = load_model(args.model, device=args.device, dtype=args.dtype, processing=args.processing,
                       trust_remote_code=args.trust_remote_code, device_map=getattr(args, "device_map", None),
                       max_memory=_parse_max_memory(getattr(args, "max_memory", None)))
    info = model_info(model)
    print(f"model {info.name} on {info.device} ({info.processing})", file=sys.stderr)
    return model


def _read_pairs_file(path: Path) -> list[PromptPair]:
    from patchlab.core.pairset import load_pairs  # CSV, TSV, JSONL or JSON; errors name the line

    return load_pairs(path)


def _check_pair_args(args) -> None:
    """Fail on incomplete prompt options before spending seconds on loading a model."""
    given = [args.clean, args.corrupted, args.answer, args.wrong]
    if args.pairs is None and any(v is not None for v in given):
        missing = [f"--{n}" for n, v in zip(("clean", "corrupted", "answer", "wrong"), given) if v is None]
        if missing:
            raise InputError(f"Give all four of --clean, --corrupted, --answer and --wrong (missing {', '.join(missing)}).")
    if args.pairs is not None:
        if not args.pairs.is_file():
            raise InputError(f"The pairs file {args.pairs} does not exist.")
        args.pair_list = _read_pairs_file(args.pairs)  # a bad file fails before the model loads


def _pairs(args, model) -> list[PromptPair]:
    given = [args.clean, args.corrupted, args.answer, args.wrong]
    if args.pairs:
        return getattr(args, "pair_list", None) or _read_pairs_file(args.pairs)
    if any(v is not None for v in given):
        return [PromptPair(*given)]
    import patchlab

    exs = patchlab.examples(model)
    if not exs:
        raise InputError("This model has no built-in examples: give --clean, --corrupted, --answer and --wrong.")
    if args.example:
        match = [e for e in exs if e.name == args.example]
        if not match:
            raise InputError(f"No example {args.example!r}. Available: {', '.join(e.name for e in exs)}.")
        ex = match[0]
    else:
        ex = exs[0]
    print(f"example {ex.name}: {ex.description}", file=sys.stderr)
    return [ex.pair]


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr is not None

    def update(self, done: int, total: int, elapsed: float) -> None:
        if not self.enabled:
            return
        width = 30
        fill = int(width * done / max(total, 1))
        eta = elapsed / done * (total - done) if done else 0.0
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} cells  {elapsed:5.1f}s  eta {eta:5.1f}s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _out_dir(path: Path | None) -> Path | None:
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the output folder {path}: {exc.strerror}.") from None
    return path


def _write(record, out: Path | None, stem: str) -> None:
    """Write ``stem.csv`` and ``stem.json`` (atomically) when ``--out`` was given."""
    if out:
        record.save_csv(out / f"{stem}.csv")
        record.save_json(out / f"{stem}.json")
        print(f"wrote {out / f'{stem}.csv'} and {out / f'{stem}.json'}")


# -- reproducible scripts (issue 8) --------------------------------------------------------
def _script_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--script", type=Path, metavar="OUT.py",
                   help="also write a Python script that reproduces this run with patchlab's API")
    p.add_argument("--tl-script", type=Path, metavar="OUT.py",
                   help="also write a script that reproduces it with plain TransformerLens calls")


def _write_extras(args, result, out: Path | None) -> None:
    """Per-pair long CSV beside result.csv (2+ pairs), and the reproducing scripts if asked."""
    from patchlab.core.script import write_script

    if out and result.n_pairs >= 2:
        result.save_csv_per_pair(out / "result_pairs.csv")
        print(f"wrote {out / 'result_pairs.csv'}")
    for path, style in ((args.script, "patchlab"), (args.tl_script, "transformerlens")):
        if path is not None:
            write_script(result, path, style=style)
            print(f"wrote {path}")


# -- commands ------------------------------------------------------------------------------
def cmd_sweep(args) -> int:
    from patchlab.engine.sweep import iter_patch

    if args.batch_size is not None and args.batch_size < 1:
        raise InputError("--batch-size must be at least 1.")
    _check_pair_args(args)
    out = _out_dir(args.out)
    model = _load(args)
    pairs = _pairs(args, model)
    bar = _Progress(not args.quiet)
    gen = iter_patch(model, pairs, target=args.target, metric=args.metric, direction=args.direction,
                     method=args.method, batch_size=args.batch_size, engine=args.engine)
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        bar.update(ev.done, ev.total, ev.elapsed)
    bar.close()
    meta = result.meta
    _say_engine(meta)
    print(f"{meta['target']} ({meta['direction']}: {DIRECTIONS[meta['direction']]}), metric {meta['metric']}, "
          f"{meta['method']} via {meta['engine_path']} in {meta['elapsed_s']:.2f}s")
    for run in ("clean", "corrupted"):
        r = meta["runs"][run]
        print(f"  {run:9s} logit diff {r['logit_diff']:+.3f}  P(answer) {r['answer_prob']:.3f}  P(wrong) {r['wrong_prob']:.3f}")
    print("  top cells:")
    for index, value in result.top_cells(5):
        print(f"    {result.cell_label(index)}: {value:+.4f}")
    _write(result, out, "result")
    _write_extras(args, result, out)
    return 0


def cmd_decompose(args) -> int:
    from patchlab.engine.decompose import decompose

    _check_pair_args(args)
    out = _out_dir(args.out)
    model = _load(args)
    pair = _pairs(args, model)[0]
    res = decompose(model, pair)
    print(f"direct logit attribution to logit({pair.answer!r}) - logit({pair.wrong!r}), processing {res.meta['processing']}")
    print(f"  {'component':14s} {'clean':>9s} {'corrupted':>9s}")
    for label, c, k in zip(res.component_labels, *res.components):
        print(f"  {label:14s} {c:+9.3f} {k:+9.3f}")
    print(f"  {'total':14s} {res.total[0]:+9.3f} {res.total[1]:+9.3f}")
    flat = res.heads[0].ravel()
    order = abs(flat).argsort()[::-1][:5]
    n_heads = res.heads.shape[2]
    print("  top heads (clean): " + ", ".join(f"L{i // n_heads}H{i % n_heads} {flat[i]:+.3f}" for i in order))
    for run in ("clean", "corrupted"):
        r = res.runs[run]
        top = ", ".join(f"{t!r} {p:.2f}" for t, p in r["top_k"][:5])
        print(f"  {run:9s} P(answer) {r['answer_prob']:.3f}  P(wrong) {r['wrong_prob']:.3f}  top: {top}")
    _write(res, out, "decompose")
    return 0


def cmd_models(args) -> int:
    try:
        from patchlab.engine import embedded
    except ImportError:
        print("This build of patchlab ships no embedded models.")
        return 0
    for card in embedded.list_embedded():
        print(embedded.format_card(card))  # its first line names the model (and the default)
        if args.examples:
            import patchlab

            for ex in patchlab.examples(card["name"]):
                print(f"   example {ex.name} [{ex.rule}]: {ex.description}")
        print()
    return 0


def cmd_screenshot(args) -> int:
    from patchlab.gui.screenshot import screenshot_main

    return screenshot_main(str(args.out), view=args.view)


def _check_display() -> None:
    """Qt aborts the process without a display; say what to do instead (Linux only)."""
    import os

    if sys.platform.startswith("linux") and not any(
        os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    ):
        raise InputError(
            "No display found for the window. Run patchlab on a desktop session, set DISPLAY, "
            "or start it under a virtual screen (`xvfb-run patchlab`; `bash packaging/dev.sh app` "
            "does this). The command line (`patchlab sweep`, `patchlab decompose`) needs no display."
        )


def cmd_gui(args) -> int:
    _check_display()
    from patchlab.gui.platform_check import check_platform

    check_platform()  # a missing xcb library: name the package instead of Qt's abort
    from patchlab.gui.app import run_app

    argv = [args.session] if getattr(args, "session", None) else []
    return run_app(argv)


COMMANDS = {"sweep": cmd_sweep, "decompose": cmd_decompose, "models": cmd_models,
            "screenshot": cmd_screenshot, "gui": cmd_gui, None: cmd_gui}
COMMANDS.update(__import__("patchlab.cli_paths", fromlist=["COMMANDS"]).COMMANDS)
COMMANDS.update(cli_text.COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``patchlab`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        return COMMANDS[args.command](args)
    except PatchlabError as exc:
        print(f"patchlab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\npatchlab: interrupted after {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
