import pytest

import patchlab

# short prompts keep TransformerLens's one-pass-per-cell reference affordable in CI
PAIRS = [
    ("Alice sees John, John gave a drink to", "Alice sees John, Mary gave a drink to", " Mary", " John"),
    ("Bob sees Mary, Mary gave a book to", "Bob sees Mary, John gave a book to", " John", " Mary"),
]
LONG_PAIR = (
    "When John and Mary went to the store, John gave a drink to",
    "When John and Mary went to the store, Mary gave a drink to",
    " Mary",
    " John",
)


@pytest.fixture(scope="session")
def tiny_models(tiny_dir):
    return {arch: patchlab.load_model(str(tiny_dir / arch), device="cpu") for arch in ("gpt2", "neox", "llama")}


@pytest.fixture(params=["gpt2", "neox", "llama"])
def arch(request):
    return request.param


@pytest.fixture
def model(tiny_models, arch):
    return tiny_models[arch]


@pytest.fixture
def pair():
    return patchlab.PromptPair(*PAIRS[0])


@pytest.fixture
def pairs():
    return [patchlab.PromptPair(*p) for p in PAIRS]


@pytest.fixture(scope="session")
def strong_models(tmp_path_factory):
    """Tiny models with larger random weights: path effects of 1e-2..1e-1, well above float32 noise."""
    import tiny_models as tm

    folder = tmp_path_factory.mktemp("strong_models")
    return {arch: patchlab.load_model(str(tm.build(arch, folder, initializer_range=0.3)), device="cpu")
            for arch in ("gpt2", "neox", "llama")}
