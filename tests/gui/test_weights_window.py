"""Issue 10 in the window: the Weights tab on toy-attn2 (bigram blocks, L0H3 -> L1 K-composition)."""

import numpy as np
import pytest
from guihelpers import WAIT_MS, wait_idle

from patchlab.engine import embedded
from patchlab.toy.language import BIGRAMS, NAMES, VERBS

pytestmark = pytest.mark.skipif(not embedded.is_embedded("toy-attn2"), reason="toy-attn2 is not built")


def test_weights_tab_shows_bigrams_and_k_composition(qtbot, make_window):
    w = make_window("toy-attn2")
    p = w.weights_presenter
    w.tabs.setCurrentWidget(w.weights_view)  # opening the tab fills it
    qtbot.waitUntil(lambda: p.matrix is not None and p.composition is not None, timeout=WAIT_MS)
    wait_idle(qtbot, w)
    view = w.weights_view
    # direct path: the whole toy vocabulary, grouped by word class; each name's strongest verb
    # is its most likely verb in the toy language's bigram table
    image = view.matrix.image.image
    assert image.shape == (119, 119)
    we, wu = w.model.W_E.detach().double(), w.model.W_U.detach().double()
    np.testing.assert_allclose(image, (we @ wu).numpy(), atol=1e-4)  # a hand W_E W_U
    vocab = w.model.tokenizer.convert_ids_to_tokens(list(range(119)))
    verbs = [vocab.index(v) for v in VERBS]
    hits = sum(VERBS[int(np.argmax(image[vocab.index(n), verbs]))] == max(BIGRAMS[n], key=BIGRAMS[n].get)
               for n in NAMES)
    assert hits >= 5, hits
    assert {"names", "verbs", "places"} <= set(p.matrix.row_groups)
    # K-composition: the previous-token head L0H3 feeds layer 1's keys, above the random baseline
    top = [(view.composition.ranked.item(r, 0).text(), view.composition.ranked.item(r, 1).text(),
            view.composition.ranked.item(r, 2).text()) for r in range(4)]
    assert all(s == "L0H3" and d.startswith("L1") and score.endswith("*") for s, d, score in top), top
    assert "random baseline" in view.composition.baseline.text()
    ref = w.model.all_composition_scores("K").scores.detach().numpy()  # TransformerLens's own scores
    np.testing.assert_allclose(p.composition.values[0, 3, 1], ref[0, 3, 1], atol=1e-4)
    # a head's QK circuit on a typed token list; the q/k/v switch recomputes the scores
    view.tokens.setText("alice, sees")
    view.circuit.setCurrentIndex(view.circuit.findData("qk"))
    view.select_head(1, 3)
    view.mode.setCurrentIndex(view.mode.findData("v"))
    assert p.refresh()
    qtbot.waitUntil(lambda: p.composition.mode == "v" and p.matrix.meta.get("circuit") == "qk", timeout=WAIT_MS)
    wait_idle(qtbot, w)
    assert view.matrix.image.image.shape == (2, 2)
