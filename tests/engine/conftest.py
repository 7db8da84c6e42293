import pytest

import patchlab

PAIRS = [
    ("When John and Mary went to the store, John gave a drink to",
     "When John and Mary went to the store, Mary gave a drink to", " Mary", " John"),
    ("When Mary and John went to the park, Mary gave a book to",
     "When Mary and John went to the park, John gave a book to", " John", " Mary"),
]


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
