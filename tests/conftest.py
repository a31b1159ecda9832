"""Shared test setup: one torch thread per test process (2-core CI), offline hub, no wandb."""

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("LEROBOT_PIRL_TORCH_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh sys.path entry that importlib.metadata scans like site-packages (for fake
    distributions with entry points, `helpers.distributions.make_distribution`)."""
    from lerobot_pirl.recipes.registry import DISABLE_ENV_VAR

    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(DISABLE_ENV_VAR, raising=False)
    return root


NO_CUDA = "no CUDA device (torch.cuda.is_available() is False): this test's CUDA variant needs a GPU"


@pytest.fixture(
    params=[
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)),
    ]
)
def device(request: pytest.FixtureRequest) -> str:
    """Each test that takes ``device`` runs on CPU and, where a GPU is present, again on CUDA."""
    return request.param


PROGRAM_MARKS = ("lerobot", "benchmarks/", "scripts/", "lint-imports")
"""Substrings of a command line that make it one of the programs integration tests start."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: starts processes (learners, actors, the demo, CLIs); `nox -s unit` runs the rest",
    )


@pytest.fixture(autouse=True)
def _processes_only_in_integration_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A test that starts one of this project's or LeRobot's programs (learner, actor, demo, a CLI,
    a benchmark or script) must carry the ``integration`` marker, so the unit tier stays free of
    them (and fast): starting one from an unmarked test fails it, naming the marker. Libraries'
    own helper processes (e.g. glfw's version probe at import) are let through."""
    if request.node.get_closest_marker("integration") is not None:
        return
    import subprocess

    popen_init = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kwargs):
        words = [args] if isinstance(args, str | bytes) else list(args)
        if any(mark in str(word) for word in words for mark in PROGRAM_MARKS):
            raise AssertionError(
                f"{request.node.nodeid} starts a process ({args!r}): mark it @pytest.mark.integration"
            )
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
