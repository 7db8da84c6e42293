"""Without pytest-qt the GUI tests skip with a visible reason, and in CI (CI=true) they fail."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = (
    "import sys\n"
    "sys.modules['pytestqt'] = None  # as on a machine without pytest-qt\n"
    "import os; os.environ['PYTEST_DISABLE_PLUGIN_AUTOLOAD'] = '1'\n"
    "import pytest\n"
    "sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', '--collect-only', 'tests',\n"
    "                      '--ignore=tests/engine', '--ignore=tests/toy', '--ignore=tests/core']))\n"
)


def _run(ci: str | None):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_missing_pytest_qt_skips_with_a_reason_locally():
    proc = _run(None)
    out = proc.stdout + proc.stderr
    assert proc.returncode in (0, 5), out  # 5: nothing collected
    assert "pytest-qt is not installed" in out, out


def test_missing_pytest_qt_fails_in_ci():
    proc = _run("true")
    out = proc.stdout + proc.stderr
    assert proc.returncode not in (0, 5), out
    assert "pytestqt" in out, out


def test_ci_script_shows_skip_reasons():
    script = (ROOT / ".ci" / "run").read_text()
    assert "-rs" in script and "CI=" in script
