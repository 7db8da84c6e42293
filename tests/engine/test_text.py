"""Analyses over text, against TransformerLens's own per-token loss and hand computations."""

import json

import numpy as np
import pytest
import torch

import patchlab
from patchlab.core.ablation_result import AblationResult
from patchlab.core.errors import InputError, TargetUnavailableError
from patchlab.core.text_result import TokenScores, TopExamples
from patchlab.engine.text.ablate import ablate, iter_ablate
from patchlab.engine.text.corpus import as_corpus
from patchlab.engine.text.losses import compare_models, token_losses
from patchlab.engine.text.token_ablation import token_ablation
from patchlab.engine.text.top_examples import top_examples

TEXTS = [
    "When John and Mary went to the store, John gave a drink to Mary.",
    "The cat sat on the mat.",
    "Alice sees Bob at the beach. Tom and Anna walk home.",
    "The war lasted from the year 1732 to the year 1789.",
]


@pytest.fixture(scope="module")
def toy2():
    return patchlab.load_model("toy-attn2", device="cpu")


def test_token_losses_match_transformer_lens_per_token_loss(model):
    res = token_losses(model, TEXTS, batch_tokens=40)  # several batches of padded rows
    assert [d.index for d in res.docs] == list(range(len(TEXTS)))
    for text, doc in zip(TEXTS, res.docs):
        with torch.no_grad():
            ref = model(text, return_type="loss", loss_per_token=True)[0].numpy()
        assert doc.tokens == [str(t) for t in model.to_str_tokens(text)]
        assert np.isnan(doc.values[0])
        np.testing.assert_allclose(doc.values[1:], ref, rtol=1e-4, atol=1e-4)
    assert res.meta["split_docs"] == 0 and res.meta["n_tokens"] == sum(len(d.tokens) for d in res.docs)


def test_long_documents_are_split_into_windows(tiny_models):
    model = tiny_models["gpt2"]
    text = " ".join(TEXTS * 4)  # longer than the 64-token context
    n_ctx = model.cfg.n_ctx
    res = token_losses(model, [text])
    doc = res.docs[0]
    assert doc.windows >= 2 and res.meta["split_docs"] == 1 and "windows" in res.meta["windows_note"]
    ids = model.to_tokens(text, truncate=False)[0]
    assert len(doc.tokens) == len(ids)
    with torch.no_grad():
        first = model(ids[None, :n_ctx], return_type="loss", loss_per_token=True)[0].numpy()
        second = torch.cat([ids[:1], ids[n_ctx:2 * n_ctx - 1]])[None]
        second_ref = model(second, return_type="loss", loss_per_token=True)[0].numpy()
    np.testing.assert_allclose(doc.values[1:n_ctx], first, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(doc.values[n_ctx:2 * n_ctx - 1], second_ref, rtol=1e-4, atol=1e-4)


def test_corpus_files_stream_and_name_bad_lines(tmp_path, tiny_models):
    model = tiny_models["gpt2"]
    txt = tmp_path / "c.txt"
    txt.write_text("The cat sat.\n\n  \nTom walks home.\n", encoding="utf-8")
    res = token_losses(model, txt)
    assert [d.line for d in res.docs] == [1, 4]
    js = tmp_path / "c.jsonl"
    js.write_text(json.dumps({"text": "The cat sat."}) + "\n" + json.dumps({"id": 3}) + "\n")
    with pytest.raises(InputError, match="line 2"):
        token_losses(model, js)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbroken \xff\xfe line\n")
    with pytest.raises(InputError, match=r"line 2: not valid UTF-8"):
        token_losses(model, bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="no documents"):
        token_losses(model, empty)
    with pytest.raises(InputError, match="empty"):
        token_losses(model, ["", "  "])
    with pytest.raises(InputError, match="does not exist"):
        token_losses(model, tmp_path / "missing.txt")


def test_a_big_file_is_read_line_by_line(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "w") as fh:
        for i in range(20000):
            fh.write(f"document number {i} about the cat\n")
    corpus = as_corpus(big, max_docs=3)
    it, done = corpus.iter_docs()
    docs = list(it)
    assert [d.line for d in docs] == [1, 2, 3]
    assert done[0] < 200 < big.stat().st_size  # only the first lines were read


def test_compare_models_is_floored_logprob_difference(toy2):
    toy1 = patchlab.load_model("toy-attn1", device="cpu")
    texts = ["alice sees bax bez kax bax bez kax", "swim dax the pool bob helps"]
    res = compare_models(toy1, toy2, texts, floor=-5.0)
    for text, doc in zip(texts, res.docs):
        toks = toy2.to_tokens(text)
        with torch.no_grad():
            la = torch.log_softmax(toy1(toks)[0], -1)
            lb = torch.log_softmax(toy2(toks)[0], -1)
        nxt = toks[0, 1:]
        a = la[:-1].gather(-1, nxt[:, None])[:, 0].clamp_min(-5)
        b = lb[:-1].gather(-1, nxt[:, None])[:, 0].clamp_min(-5)
        assert np.isnan(doc.values[0])
        np.testing.assert_allclose(doc.values[1:], (b - a).numpy(), atol=1e-4)
    top = res.top(3)
    assert top[0].value == pytest.approx(np.nanmax(np.concatenate([d.values for d in res.docs])))
    assert top[0].context.count("[") == 1
    counts, edges = res.histogram(10)
    assert counts.sum() == sum(np.isfinite(d.values).sum() for d in res.docs) and len(edges) == 11
    same = compare_models(toy2, toy2, texts)
    assert np.nanmax(np.abs(np.concatenate([d.values for d in same.docs]))) == 0


def test_compare_models_with_different_tokenizers_says_so(toy2, tiny_models):
    with pytest.raises(InputError, match="different tokenizers"):
        compare_models(toy2, tiny_models["gpt2"], ["the cat"])


def _zero_head_loss(model, text, layer, head):
    def hook(z, hook):
        z[:, :, head] = 0
        return z

    with torch.no_grad():
        logits = model.run_with_hooks(model.to_tokens(text), fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)])
    toks = model.to_tokens(text)[0]
    return -torch.log_softmax(logits[0, :-1], -1).gather(-1, toks[1:, None])[:, 0].numpy()


def test_head_zero_ablation_matches_hand_hooked_runs(model):
    res = ablate(model, TEXTS[:3], components="heads", method="zero", batch_tokens=48)
    assert res.axes == ("layer", "head") and res.values.shape == (model.cfg.n_layers, model.cfg.n_heads)
    for d_i, text in enumerate(TEXTS[:3]):
        with torch.no_grad():
            clean = model(text, return_type="loss", loss_per_token=True)[0].numpy()
        drill = res.drilldown("L1H2").docs[d_i]
        np.testing.assert_allclose(drill.values[1:], _zero_head_loss(model, text, 1, 2) - clean, atol=2e-4)
        np.testing.assert_allclose(res.docs[d_i].values[1:], clean, atol=2e-4)
    all_deltas = np.concatenate([_zero_head_loss(model, t, 0, 1) - model(t, return_type="loss", loss_per_token=True)[0].detach().numpy()
                                 for t in TEXTS[:3]])
    assert res.values[0, 1] == pytest.approx(all_deltas.mean(), abs=2e-4)
    assert (res.ci_low <= res.values + 1e-12).all() and (res.values <= res.ci_high + 1e-12).all()
    assert res.ranked()[0][1] == pytest.approx(np.nanmax(res.values))
    # the plain-torch path (checked against the bridge) and the bridge's hooks agree
    assert res.meta["engine_path"] == "fast", res.meta["fallback_reason"]
    slow = ablate(model, TEXTS[:3], components="heads", method="zero", batch_tokens=48, engine="bridge")
    assert slow.meta["engine_path"] == "bridge"
    np.testing.assert_allclose(slow.deltas, res.deltas, atol=2e-4)


def test_mlp_mean_ablation_uses_the_corpus_mean(tiny_models):
    model = tiny_models["gpt2"]
    names = [f"blocks.{layer}.hook_mlp_out" for layer in range(model.cfg.n_layers)]
    acts = {n: [] for n in names}
    for t in TEXTS:
        _, cache = model.run_with_cache(model.to_tokens(t), names_filter=lambda n: n in names)
        for n in names:
            acts[n].append(cache[n][0])
    mean1 = torch.cat(acts[names[1]]).mean(0)

    def hook(a, hook):
        a[:] = mean1
        return a

    res = ablate(model, TEXTS, components="mlps", method="mean")
    assert res.axes == ("layer",) and res.component_labels == ["L0 MLP", "L1 MLP", "L2 MLP"]
    text = TEXTS[2]
    with torch.no_grad():
        toks = model.to_tokens(text)
        lg = model.run_with_hooks(toks, fwd_hooks=[(names[1], hook)])
        abl = -torch.log_softmax(lg[0, :-1], -1).gather(-1, toks[0, 1:, None])[:, 0]
        clean = model(text, return_type="loss", loss_per_token=True)[0]
    np.testing.assert_allclose(res.drilldown("L1 MLP").docs[2].values[1:], (abl - clean).numpy(), atol=2e-4)


def test_all_components_resample_and_bad_input(tiny_models, toy2):
    model = tiny_models["neox"]
    res = ablate(model, TEXTS, components="all", method="resample", seed=1)
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    assert res.axes == ("component",) and len(res.component_labels) == n_l * (n_h + 1)
    assert res.component_labels[n_h] == "L0 MLP" and np.isfinite(res.values).all()
    again = ablate(model, TEXTS, components="all", method="resample", seed=1)
    np.testing.assert_array_equal(res.values, again.values)
    with pytest.raises(TargetUnavailableError, match="attention-only"):
        ablate(toy2, ["alice sees"], components="mlps")
    with pytest.raises(InputError, match="mean, zero or resample"):
        ablate(toy2, ["alice sees"], method="median")
    back = AblationResult.from_dict(json.loads(res.to_json()))
    np.testing.assert_allclose(back.values, res.values)
    assert back.component_labels == res.component_labels
    assert res.to_csv().splitlines()[0] == "component,component,loss_change,ci_low,ci_high"


def test_ablation_streams_events_and_stops(toy2):
    from patchlab.engine.text.corpus import toy_corpus

    stop = {"n": 0}

    def stopper():
        return stop["n"] >= 2

    gen = iter_ablate(toy2, toy_corpus(40, seed=1), method="zero", batch_tokens=640, stop=stopper)
    events = []
    while True:
        try:
            ev = next(gen)
        except StopIteration as fin:
            res = fin.value
            break
        events.append(ev)
        stop["n"] += 1
    assert len(events) == 2 and events[0].total == 40 and events[0].unit == "docs"
    assert 0 < events[-1].fraction < 1 and np.isfinite(events[-1].eta)
    assert res.meta["complete"] is False and len(res.docs) < 40


def test_token_ablation_delete_and_replace_match_hand_runs(toy2):
    text = "alice sees bax bez kax bax"
    bez = toy2.to_single_token("bez")
    ids = toy2.to_tokens(text)[0].tolist()
    with torch.no_grad():
        base = torch.log_softmax(toy2(torch.tensor([ids]))[0, -1], -1)[bez]
        res = token_ablation(toy2, text, -1, "logprob: bez", method="delete")
        doc = res.docs[0]
        assert doc.tokens[0] == "<bos>" and np.isnan(doc.values[0]) and np.isnan(doc.values[-1])
        for j in range(1, len(ids) - 1):
            row = ids[:j] + ids[j + 1:]
            ref = torch.log_softmax(toy2(torch.tensor([row]))[0, -1], -1)[bez] - base
            assert doc.values[j] == pytest.approx(float(ref), abs=1e-4)
        rep = token_ablation(toy2, text, 6, "logit: bez", method="replace")
        unk = toy2.tokenizer.unk_token_id
        row = ids[:3] + [unk] + ids[4:]
        ref = toy2(torch.tensor([row]))[0, -1, bez] - toy2(torch.tensor([ids]))[0, -1, bez]
        assert rep.docs[0].values[3] == pytest.approx(float(ref), abs=1e-4)
        assert rep.meta["replacement"] == "<unk>"
    # deleting the earlier copy of 'bax' (position 3) breaks induction more than anything else
    assert int(np.nanargmin(doc.values)) in (3, 4)


def test_token_ablation_mask_matches_hand_masked_attention():
    model = patchlab.load_model("toy-attn1", device="cpu")
    text = "alice sees bax bez kax bax"
    ids = model.to_tokens(text)
    n = ids.shape[1]
    res = token_ablation(model, text, -1, "head: L0H1", method="mask")
    with torch.no_grad():
        _, cache = model.run_with_cache(ids)
    q, k, v = (cache[f"blocks.0.attn.hook_{x}"][0] for x in "qkv")  # [pos, head, d_head]
    w_o = model.blocks[0].attn.W_O[1].detach()
    for j in range(1, n - 1):
        scores = torch.einsum("qhd,khd->hqk", q, k) / q.shape[-1] ** 0.5
        causal = torch.ones(n, n).tril().bool()
        causal[j + 1:, j] = False
        pat = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        z = torch.einsum("hqk,khd->qhd", pat, v)
        ref = (z[-1, 1] @ w_o).norm() - (cache["blocks.0.attn.hook_z"][0, -1, 1] @ w_o).norm()
        assert res.docs[0].values[j] == pytest.approx(float(ref), abs=1e-4)


def test_token_ablation_bad_input(toy2, tiny_models):
    with pytest.raises(InputError, match="outside the text"):
        token_ablation(toy2, "alice sees", 9, "logprob: bez")
    with pytest.raises(InputError, match="Unknown target"):
        token_ablation(toy2, "alice sees", 2, "prob: bez")
    with pytest.raises(InputError, match="Head 7"):
        token_ablation(toy2, "alice sees", 2, "head: L1H7")
    with pytest.raises(TargetUnavailableError, match="attention-only"):
        token_ablation(toy2, "alice sees", 2, "neuron: L0N3")
    with pytest.raises(InputError, match="delete, replace or mask"):
        token_ablation(toy2, "alice sees", 2, "logprob: bez", method="drop")
    res = token_ablation(tiny_models["gpt2"], "The cat sat on the mat", -1, "neuron: L1N5", method="mask")
    assert np.isfinite(res.docs[0].values[1:-1]).all()


def test_top_examples_are_the_largest_activations(tiny_models):
    model = tiny_models["gpt2"]
    res = top_examples(model, TEXTS, neuron=(1, 5), k=6, batch_tokens=40)
    allv = []
    for d, t in enumerate(TEXTS):
        _, cache = model.run_with_cache(model.to_tokens(t), names_filter=lambda n: n == "blocks.1.mlp.hook_post")
        acts = cache["blocks.1.mlp.hook_post"][0, :, 5]
        allv += [(float(a), d, p) for p, a in enumerate(acts) if p > 0]  # BOS excluded
    ref = sorted(allv, key=lambda x: -x[0])[:6]
    assert [(e.doc, e.pos) for e in res.examples] == [(d, p) for _, d, p in ref]
    np.testing.assert_allclose([e.value for e in res.examples], [v for v, _, _ in ref], rtol=1e-4, atol=1e-5)
    e = res.examples[0]
    assert e.values[e.focus] == pytest.approx(e.value) and e.token == model.to_str_tokens(TEXTS[e.doc])[e.pos]
    back = TopExamples.from_dict(json.loads(res.to_json()))
    assert [x.pos for x in back.examples] == [x.pos for x in res.examples]
    with pytest.raises(InputError, match="exactly one"):
        top_examples(model, TEXTS, k=3)


def test_token_scores_exports(tmp_path, toy2):
    res = token_losses(toy2, ["alice sees bax <b>", "bob helps"])
    html = res.to_html()
    assert html.count("<span") == sum(len(d.tokens) for d in res.docs)
    assert "&lt;unk&gt;" in html and ">&lt;bos&gt;<" in html and "<unk>" not in html  # escaped
    assert "title=" in html and "loss (nats)" in html
    path = res.save_html(tmp_path / "x.html")
    assert path.read_text().startswith("<!DOCTYPE html>")
    rows = res.to_csv().splitlines()
    assert rows[0] == "doc,line,pos,token,loss (nats)" and len(rows) == 1 + sum(len(d.tokens) for d in res.docs)
    back = TokenScores.from_dict(json.loads(res.to_json()))
    np.testing.assert_allclose(back.docs[1].values, res.docs[1].values)
