"""The package's layers, as `pyproject.toml`'s import-linter contract states them, hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_point_down_the_layers_only() -> None:
    """commands/demo -> tasks -> envs -> runtime -> recipes -> policies -> flow_rl -> errors, with
    function-local imports counted (import-linter reads every import statement)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout
