"""Property tests for the command line: generated argv never gives a traceback.

``patchlab.cli.main`` runs in-process. No model loads: the loader and the engine entry points
are replaced by stubs that raise ``Reached`` ("the arguments were accepted up to the model"),
so every example costs milliseconds. Every other outcome must be a clean exit: status 0
(``--help``, ``--version``, ``models``) or status 2 with one ``patchlab: error:`` message.
"""

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import patchlab.cli as cli  # noqa: E402
from patchlab.core.metrics import DIRECTIONS, METHODS, METRICS  # noqa: E402
from patchlab.core.targets import TARGETS  # noqa: E402

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Reached(Exception):
    """The command got past argument checking to the model (stubbed out)."""


class FakeModel:
    def __getattr__(self, name):
        raise Reached(name)


@pytest.fixture
def stubbed(monkeypatch, tmp_path):
    import patchlab.engine.decompose as dec
    import patchlab.engine.sweep as sweep

    def reached(*args, **kwargs):
        raise Reached("engine")

    monkeypatch.setattr(cli, "_load", lambda args: FakeModel())
    monkeypatch.setattr(sweep, "iter_patch", reached)
    monkeypatch.setattr(dec, "decompose", reached)
    monkeypatch.chdir(tmp_path)  # any relative --out lands in the temp folder
    (tmp_path / "a_file").write_text("x")
    return tmp_path


def run(argv, capsys):
    """(status or 'reached', stdout, stderr) of ``patchlab argv``."""
    capsys.readouterr()
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except Reached:
        status = "reached"
    out, err = capsys.readouterr()
    return status, out, err


def assert_clean(status, out, err, argv):
    assert "Traceback" not in out + err, (argv, err)
    assert status in (0, 2, "reached"), (argv, status, err)
    if status == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("patchlab: error:")]
        assert len(lines) == 1, (argv, err)  # one message, saying what to change
        assert len(lines[0]) > len("patchlab: error: ") + 5


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=15)
CHOICES = {"--target": list(TARGETS), "-t": list(TARGETS), "--direction": list(DIRECTIONS),
           "--metric": list(METRICS), "--method": list(METHODS), "--engine": ["auto", "fast", "generic"],
           "--processing": ["compat", "raw"], "--device": ["cpu", "auto", "cuda", "mps", "tpu"],
           "--dtype": ["float32", "float16", "int8"]}
VALUED = ["--model", "-m", "--clean", "--corrupted", "--answer", "--wrong", "--example", "--batch-size",
          "--pairs", "--out", "-o", *CHOICES]
SWITCHES = ["--quiet", "-q", "--examples", "--trust-remote-code", "--help", "--nope", "-x"]


@st.composite
def values_for(draw, flag):
    if flag in CHOICES and draw(st.booleans()):
        return draw(st.sampled_from(CHOICES[flag]))
    if flag == "--batch-size":
        return draw(st.sampled_from(["-3", "0", "1", "64", "1e3", "two", ""]))
    if flag in ("--out", "-o"):
        # relative paths only (the cwd is a temp folder), plus unwritable and file-blocked ones
        return draw(st.sampled_from(["out", "a_file/sub", "/proc/no/such/dir", "a_file", "", "deep/er/out"]))
    if flag == "--pairs":
        return draw(st.sampled_from(["missing.jsonl", "a_file", ".", ""]))
    return draw(text)


@st.composite
def argvs(draw):
    cmd = draw(st.sampled_from(["sweep", "decompose", "models", "bogus", "--version", "-h", "", "SWEEP"]))
    argv = [cmd] if cmd else [""]
    for _ in range(draw(st.integers(0, 7))):
        kind = draw(st.integers(0, 9))
        if kind < 6:
            flag = draw(st.sampled_from(VALUED))
            argv += [flag, draw(values_for(flag))]
        elif kind < 8:
            argv.append(draw(st.sampled_from(SWITCHES)))
        else:
            argv.append(draw(text))  # a stray positional
    return argv


@FUZZ
@given(argvs())
def test_generated_command_lines_exit_cleanly(stubbed, capsys, argv):
    status, out, err = run(argv, capsys)
    assert_clean(status, out, err, argv)


def test_the_stubs_let_valid_arguments_through(stubbed, capsys):
    """Guard: the fuzz can tell accepted arguments from rejected ones."""
    ok = ["sweep", "--clean", "a b", "--corrupted", "c b", "--answer", " x", "--wrong", " y", "-t", "mlp_out"]
    assert run(ok, capsys)[0] == "reached"
    assert run(["sweep", "--clean", "a b"], capsys)[0] == 2
    assert run(["models"], capsys)[0] == 0


pair_line = st.sampled_from([
    '{"clean": "a b", "corrupted": "c b", "answer": " x", "wrong": " y"}',
    '{"pair": {"clean": "a b", "corrupted": "c b", "answer": " x", "wrong": " y"}}',
    '{"clean": 1, "corrupted": [], "answer": null, "wrong": {}}', '{"pair": [1]}', "[]", "{", "",
    "clean,corrupted,answer,wrong", '"a b","c b"," x"," y"', '{"clean": "a"}',
])
pair_file = (st.lists(pair_line | text, max_size=5).map(lambda ls: "\n".join(ls).encode())
             | st.binary(max_size=120))


@FUZZ
@given(pair_file, st.sampled_from(["pairs.jsonl", "pairs.csv", "pairs.json", "pairs"]),
       st.sampled_from(["sweep", "decompose"]))
def test_any_pairs_file_exits_cleanly(stubbed, capsys, payload, name, cmd):
    (stubbed / name).write_bytes(payload)
    status, out, err = run([cmd, "--pairs", name, "-q"] if cmd == "sweep" else [cmd, "--pairs", name], capsys)
    assert_clean(status, out, err, payload)
