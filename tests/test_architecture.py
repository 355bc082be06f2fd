import subprocess
import sys
from pathlib import Path


def test_layer_contracts_hold():
    """server | cli → core → engines | vectorstores | storage; wire formats independent (import-linter)."""
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(linter)], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_outcrop_stays_light():
    code = "import sys, outcrop, outcrop.types, outcrop.errors; print(sorted(m for m in ('torch', 'xllamacpp', 'fastapi', 'sentence_transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
