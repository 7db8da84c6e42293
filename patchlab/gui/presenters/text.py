"""Text presenter (issue 10): token losses, model comparison, ablations and top examples over a
corpus, all on the worker with progress, ETA and cancel; results as coloured text and tables.

Model B of a comparison is loaded on the worker too (and kept for the next comparison).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from patchlab.core.errors import InputError, PatchlabError
from patchlab.core.io import atomic_write_text
from patchlab.gui.jobs import Outcome, Status

_UNIT = re.compile(r"^\s*L(\d+)\s*([HN])(\d+)\s*$", re.I)


def parse_unit(text: str) -> dict[str, tuple[int, int]]:
    """``"L1H3"`` -> ``{"head": (1, 3)}``, ``"L0N12"`` -> ``{"neuron": (0, 12)}``."""
    m = _UNIT.match(text or "")
    if not m:
        raise InputError(f"Top examples need a head like L1H3 or a neuron like L0N12, got {text!r}.")
    return {"head" if m.group(2).upper() == "H" else "neuron": (int(m.group(1)), int(m.group(3)))}


def text_job(model, *, analysis: str, source: tuple[str, Any], options: dict, cache: dict, stop=None):
    """Worker side: build the corpus, run one analysis (a generator of ``TextEvent``)."""
    from patchlab.engine.text import corpus as corpus_mod

    kind, value = source
    corpus = corpus_mod.toy_corpus(int(value)) if kind == "toy" else corpus_mod.as_corpus(value)
    if analysis == "losses":
        from patchlab.engine.text.losses import iter_token_losses

        return (yield from iter_token_losses(model, corpus, stop=stop))
    if analysis == "compare":
        from patchlab.engine.loading import load_model
        from patchlab.engine.text.losses import iter_compare_models

        name = options["model_b"]
        if cache.get("name") != name:  # loading model B happens here, on the worker
            cache["model"], cache["name"] = load_model(name, device=str(model.cfg.device)), name
        return (yield from iter_compare_models(model, cache["model"], corpus, stop=stop))
    if analysis == "ablate":
        from patchlab.engine.text.ablate import iter_ablate

        return (yield from iter_ablate(model, corpus, components=options["components"],
                                       method=options["method"], stop=stop))
    if analysis == "top":
        from patchlab.engine.text.top_examples import iter_top_examples

        return (yield from iter_top_examples(model, corpus, stop=stop, **parse_unit(options["unit"])))
    if analysis == "token":
        from patchlab.engine.text.token_ablation import token_ablation

        doc = next(iter(corpus))
        return token_ablation(model, doc.text, int(options["position"]), options["target"])
    raise InputError(f"Unknown text analysis {analysis!r}.")


class TextPresenter:
    """Job ``text`` and the :class:`TextTab`. ``result`` is the last finished result."""

    def __init__(self, controller, view, notify: Callable[[str], None],
                 ask_path: Callable[[str], str | None] | None = None) -> None:
        self.controller, self.view, self.notify, self.ask_path = controller, view, notify, ask_path
        self.result: Any = None
        self.analysis = ""
        self.model_b_cache: dict = {}
        controller.on_done("text", self._done)
        controller.on_progress("text", self._progress)
        view.runRequested.connect(self.run)
        view.cancelRequested.connect(lambda: controller.cancel("text"))
        view.exportRequested.connect(self._export_clicked)
        view.componentPicked.connect(self.show_component)
        controller.modelChanged.connect(lambda _m: self.model_b_cache.clear())

    def source(self) -> tuple[str, Any]:
        v = self.view
        kind = v.source.currentData()
        if kind == "toy":
            return "toy", v.n_docs.value()
        if kind == "paste":
            text = v.paste.toPlainText()
            if not text.strip():
                raise InputError("Paste some text first.")
            return "paste", text
        path = v.path.text().strip()
        if not path:
            raise InputError("Choose a .txt or .jsonl file first.")
        return "file", Path(path)

    def run(self) -> bool:
        """Start the chosen analysis on the worker; False (with the reason shown) when it cannot."""
        v = self.view
        if self.controller.model is None:
            v.status.setText("Load a model first.")
            return False
        try:
            source = self.source()
            if v.analysis.currentData() == "top":
                parse_unit(v.unit.text())
        except InputError as exc:
            v.status.setText(str(exc))
            return False
        self.analysis = v.analysis.currentData()
        options = dict(model_b=v.model_b.currentText(), components=v.components.currentData(),
                       method=v.method.currentData(), unit=v.unit.text(), position=v.position.value(),
                       target=v.target.text())
        v.progress.setValue(0)
        v.set_running(True, f"{v.analysis.currentText()}: starting\u2026")
        self.controller.submit("text", text_job, dict(model=self.controller.model, analysis=self.analysis,
                                                      source=source, options=options,
                                                      cache=self.model_b_cache, stop=None),
                               context=dict(analysis=self.analysis, label=v.analysis.currentText()))
        return True

    def _progress(self, ev) -> None:
        frac = getattr(ev, "fraction", None)
        if frac is None:
            return
        self.view.progress.setValue(int(frac * 1000))
        eta = ev.eta
        eta_text = f", about {eta:.0f} s left" if eta == eta else ""
        self.view.status.setText(f"{ev.phase}: {ev.tokens} tokens, {ev.docs} documents{eta_text}")

    def _done(self, out: Outcome) -> None:
        v = self.view
        if out.status is Status.CANCELLED:
            v.set_running(False, "Cancelled.")
            return
        if not out.ok:
            v.set_running(False, f"Failed: {out.error}")
            return
        res, kind = out.value, out.context["analysis"]
        self.result = res
        v.progress.setValue(1000)
        if kind == "ablate":
            ranked = res.ranked()
            v.set_components(ranked)
            if ranked:
                self.show_component(ranked[0][0])
        elif kind == "top":
            v.set_components(None)
            v.view.set_top_examples(res)
        else:
            v.set_components(None)
            v.view.set_scores(res)
        v.set_running(False, f"{out.context['label']} done.")

    def show_component(self, label: str) -> None:
        """Ablation drill-down: the per-token loss change of one component as coloured text."""
        if self.result is not None and hasattr(self.result, "drilldown"):
            self.view.view.set_scores(self.result.drilldown(label))

    # -- exports ----------------------------------------------------------------------------
    def export(self, path: str | Path, fmt: str | None = None) -> Path:
        """Write the last result as CSV, JSON or HTML (coloured text)."""
        if self.result is None:
            raise InputError("Nothing to export yet: run a text analysis first.")
        path = Path(path)
        fmt = fmt or path.suffix.lstrip(".").lower()
        res = self.result
        if fmt == "csv":
            text = res.to_csv()
        elif fmt == "json":
            text = res.to_json()
        elif fmt == "html":
            if not hasattr(res, "to_html"):  # ablation: the drill-down of the strongest component
                res = res.drilldown(res.ranked()[0][0])
            text = res.to_html()
        else:
            raise InputError(f"Export as csv, json or html, not {fmt!r}.")
        return atomic_write_text(path, text)

    def _export_clicked(self, fmt: str) -> None:
        path = self.ask_path(f"text_{self.analysis or 'result'}.{fmt}") if self.ask_path else None
        if not path:
            return
        try:
            self.notify(f"Exported {self.export(path, fmt)}")
        except PatchlabError as exc:
            self.view.status.setText(str(exc))
