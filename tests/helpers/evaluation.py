"""Comparing LeRobot's evaluator with ours."""

from __future__ import annotations

import numpy as np
import pytest


def assert_same_success_rate(stock: dict, ours, episodes: int) -> None:
    """LeRobot's rate against ours on the same reset seeds, within binomial noise, and against the
    sparse rewards it summed itself (one reward 1.0 per success, which ends the episode)."""
    rate = stock["pc_success"] / 100
    assert rate == pytest.approx(stock["avg_sum_reward"], abs=1e-9)
    assert rate == pytest.approx(np.mean(stock["successes"]))
    pooled = (rate + ours.success_rate) / 2
    three_sigma = 3 * (2 * max(pooled * (1 - pooled), 0.05) / episodes) ** 0.5
    assert abs(rate - ours.success_rate) <= three_sigma, (rate, ours.success_rate)
