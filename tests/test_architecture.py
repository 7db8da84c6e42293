"""Layering: gui -> engine -> core; core without torch/Qt, engine without Qt."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broken" not in proc.stdout.lower() or "0 broken" in proc.stdout.lower()


def test_core_imports_without_torch_or_qt():
    code = (
        "import sys\n"
        "for m in ('torch', 'transformer_lens', 'PySide6', 'pyqtgraph', 'superqt'): sys.modules[m] = None\n"
        "import pkgutil, importlib, patchlab, patchlab.core\n"
        "for m in pkgutil.iter_modules(patchlab.core.__path__): importlib.import_module('patchlab.core.' + m.name)\n"
        "print('ok')\n"
    )
    proc = _run(code)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_engine_works_without_qt():
    code = (
        "import sys\n"
        "for m in ('PySide6', 'pyqtgraph', 'superqt'): sys.modules[m] = None\n"
        "import pkgutil, importlib, patchlab.engine\n"
        "for m in pkgutil.walk_packages(patchlab.engine.__path__, 'patchlab.engine.'): importlib.import_module(m.name)\n"
        "import patchlab; patchlab.patch; patchlab.decompose; patchlab.load_model\n"
        "print('ok')\n"
    )
    proc = _run(code)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_core_and_engine_tests_pass_with_qt_absent():
    """The core and engine test suites run on a machine without any Qt package."""
    if "PATCHLAB_NO_QT_RUN" in __import__("os").environ:  # the inner run collects this file too
        return
    code = (
        "import sys, os\n"
        "for m in ('PySide6', 'pyqtgraph', 'superqt', 'pytestqt'): sys.modules[m] = None\n"
        "os.environ['PATCHLAB_NO_QT_RUN'] = '1'\n"
        "os.environ['PYTEST_DISABLE_PLUGIN_AUTOLOAD'] = '1'  # pytest-qt would import Qt\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/core',\n"
        "                      'tests/engine/test_cli.py', 'tests/engine/test_readout.py']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_core_type_checks():
    """mypy on patchlab.core (the engine's tensor Optionals are not annotated tightly yet)."""
    pytest = __import__("pytest")
    pytest.importorskip("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy", "patchlab/core", "--ignore-missing-imports",
                           "--no-error-summary"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_lint_is_clean():
    exe = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(exe).exists():
        __import__("pytest").skip("ruff is not installed")
    proc = subprocess.run([exe, "check", "patchlab", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
