"""On-policy rollout assembly: fresh decisions in, one GAE-ready rollout out, then discarded.

Decisions arrive per actor episode (LeRobot actors send an episode when it ends), possibly
interleaved across actors. They are grouped by (actor, episode), ordered by decision index, and
kept only if sampled by a recent enough policy version. Memory is bounded by the rollout size.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .transitions import Decision


@dataclass
class Rollout:
    """Decisions in trajectory order, with per-decision flags GAE needs."""

    decisions: list[Decision]
    segment_end: Tensor  # [N] bool: last decision of its trajectory segment in this rollout
    terminated: Tensor  # [N] bool
    truncated: Tensor  # [N] bool: truncated by the env, or cut by the rollout boundary

    @property
    def rewards(self) -> Tensor:
        return torch.tensor([d.reward for d in self.decisions], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.decisions)


@dataclass
class RolloutAssembler:
    """Collects decisions until ``rollout_size`` are available (fresh ones only)."""

    rollout_size: int
    max_staleness: int
    policy_version: int = 0
    received: int = 0
    dropped_stale: int = 0
    consumed: int = 0
    _pending: dict[tuple[int, int], list[Decision]] = field(default_factory=lambda: defaultdict(list))

    def add(self, decision: Decision) -> bool:
        """Keep ``decision`` if fresh enough; returns whether it was kept."""
        self.received += 1
        staleness = self.policy_version - decision.policy_version
        if staleness > self.max_staleness or staleness < 0:
            self.dropped_stale += 1
            return False
        self._pending[(decision.actor_id, decision.episode_id)].append(decision)
        return True

    def pending(self) -> int:
        return sum(len(v) for v in self._pending.values())

    def ready(self) -> bool:
        return self.pending() >= self.rollout_size

    def advance_policy_version(self) -> None:
        """After an update: drop what became too stale, so it never trains a later policy."""
        self.policy_version += 1
        for key in list(self._pending):
            kept = [
                d for d in self._pending[key] if self.policy_version - d.policy_version <= self.max_staleness
            ]
            self.dropped_stale += len(self._pending[key]) - len(kept)
            if kept:
                self._pending[key] = kept
            else:
                del self._pending[key]

    def take(self) -> Rollout:
        """All pending decisions as one rollout (trajectories kept contiguous), then forget them."""
        decisions: list[Decision] = []
        segment_end: list[bool] = []
        truncated: list[bool] = []
        for key in sorted(self._pending):
            trajectory = sorted(self._pending[key], key=lambda d: d.decision_index)
            for position, decision in enumerate(trajectory):
                last = position == len(trajectory) - 1
                decisions.append(decision)
                segment_end.append(last)
                # A segment that stops without the episode ending bootstraps like a truncation.
                truncated.append(decision.truncated or (last and not decision.terminated))
        self._pending.clear()
        self.consumed += len(decisions)
        return Rollout(
            decisions=decisions,
            segment_end=torch.tensor(segment_end, dtype=torch.bool),
            terminated=torch.tensor([d.terminated for d in decisions], dtype=torch.bool),
            truncated=torch.tensor(truncated, dtype=torch.bool),
        )
