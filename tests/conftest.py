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
