"""The πRL sampling and loss settings, and the one place their values are checked.

``PiRLConfig`` (the learner's ``algorithm`` block) builds both from its fields and validates all of
them, right after parsing, with the rules below; constructing either dataclass directly runs the
same rules, so a value is accepted or refused the same way wherever it comes from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

NoiseMethod = Literal["flow_sde", "flow_noise"]
RatioGranularity = Literal["decision", "token"]
RATIO_GRANULARITIES: tuple[str, ...] = get_args(RatioGranularity)
NOISE_METHODS: tuple[str, ...] = get_args(NoiseMethod)
DEFAULT_NOISE_METHOD: NoiseMethod = "flow_sde"
"""Flow-SDE: it was the steadier variant on the learning benchmark (``flow_noise``'s first updates are
dominated by the noise head moving its std), and it needs no extra head."""


def sampling_problems(
    noise_method: str,
    num_steps: int | None,
    noise_level: float,
    noise_std_min: float,
    noise_std_max: float,
    executed_steps: int | None,
) -> list[str]:
    """``field=value (accepted range)`` for every sampling setting that is out of range."""
    problems = []
    if noise_method not in NOISE_METHODS:
        problems.append(f"noise_method={noise_method!r} (accepted: {', '.join(NOISE_METHODS)})")
    for name, value in (("num_steps", num_steps), ("executed_steps", executed_steps)):
        if value is not None and value < 1:
            problems.append(f"{name}={value} (must be ≥ 1, or null for the policy's value)")
    if not noise_level > 0:
        problems.append(f"noise_level={noise_level} (must be > 0; the paper uses 0.3–0.8)")
    if not 0 < noise_std_min <= noise_std_max:
        problems.append(f"noise_std_min={noise_std_min}, noise_std_max={noise_std_max} (need 0 < min ≤ max)")
    return problems


def loss_problems(
    clip_eps: float,
    value_clip: float,
    huber_delta: float,
    entropy_coef: float,
    value_coef: float,
    ratio_granularity: str,
) -> list[str]:
    """``field=value (accepted range)`` for every loss setting that is out of range."""
    problems = []
    if ratio_granularity not in RATIO_GRANULARITIES:
        problems.append(
            f"ratio_granularity={ratio_granularity!r} (accepted: {', '.join(RATIO_GRANULARITIES)})"
        )
    for name, value in (("clip_eps", clip_eps), ("value_clip", value_clip), ("huber_delta", huber_delta)):
        if not value > 0:
            problems.append(f"{name}={value} (must be > 0)")
    for name, value in (("entropy_coef", entropy_coef), ("value_coef", value_coef)):
        if not value >= 0:
            problems.append(f"{name}={value} (must be ≥ 0)")
    return problems


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise ValueError(f"invalid {what}: " + "; ".join(problems))


@dataclass(frozen=True)
class PiRLSampling:
    """How rollouts are sampled and scored.

    ``num_steps`` (K) and ``executed_steps`` (H') left as None take the policy's own values
    (``resolve``). ``noise_level`` is Flow-SDE's a; the std bounds are Flow-Noise's.
    """

    noise_method: NoiseMethod = DEFAULT_NOISE_METHOD
    num_steps: int | None = None
    noise_level: float = 0.5
    noise_std_min: float = 0.08
    noise_std_max: float = 0.16
    executed_steps: int | None = None

    def __post_init__(self) -> None:
        _raise_if(sampling_problems(**dataclasses.asdict(self)), "πRL sampling settings")

    def resolve(self, default_num_steps: int, default_executed_steps: int, chunk_size: int) -> PiRLSampling:
        """K and H' filled from the policy's defaults, H' checked against its chunk size."""
        resolved = dataclasses.replace(
            self,
            num_steps=self.num_steps if self.num_steps is not None else default_num_steps,
            executed_steps=self.executed_steps if self.executed_steps is not None else default_executed_steps,
        )
        assert resolved.executed_steps is not None
        if resolved.executed_steps > chunk_size:
            raise ValueError(
                f"invalid πRL sampling settings: executed_steps={resolved.executed_steps} "
                f"(must be in [1, chunk_size={chunk_size}])"
            )
        return resolved


@dataclass(frozen=True)
class PiRLLossConfig:
    """PPO hyperparameters of the πRL loss (πRL paper defaults)."""

    clip_eps: float = 0.2
    value_clip: float = 0.2
    huber_delta: float = 10.0
    entropy_coef: float = 0.005
    value_coef: float = 1.0
    ratio_granularity: RatioGranularity = "decision"

    def __post_init__(self) -> None:
        _raise_if(loss_problems(**dataclasses.asdict(self)), "πRL loss settings")


def fields_of(config: Any, cls: type[Any]) -> dict[str, Any]:
    """The values of ``config``'s fields that ``cls`` (``PiRLSampling`` / ``PiRLLossConfig``) has."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(cls)}
