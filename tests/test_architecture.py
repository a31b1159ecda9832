"""The package's layers, as `pyproject.toml`'s import-linter contract states them, hold."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_imports_point_down_the_layers_only(capsys) -> None:
    """commands/demo -> tasks -> envs -> runtime -> recipes -> policies -> flow_rl -> errors, with
    function-local imports counted (import-linter reads every import statement)."""
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report[-3000:]
    assert "1 kept, 0 broken" in report
