"""The test tiers: programs start only from tests marked ``integration`` (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_an_unmarked_test_cannot_start_a_learner() -> None:
    with pytest.raises(AssertionError, match="mark it @pytest.mark.integration"):
        subprocess.run([sys.executable, "-m", "lerobot_pirl.runtime.learner", "--help"], timeout=60)


@pytest.mark.integration
def test_a_marked_test_can() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lerobot_pirl.commands", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "tls-keygen" in done.stdout
