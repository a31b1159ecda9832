"""A second flow-matching policy, not XVLA, with its πRL adapter: what a third party writes.

``ToyFlowPolicy`` is a plain torch module with a LeRobot-like surface (``config.type``, ``forward``)
whose "VLM" is a linear encoder of the state and whose transformer is a linear map of
[features, x_t, t] per action token. Its model action space has one padding dim beyond the env's
(``real_action_dim < model_action_dim``), like XVLA's. The module is also a plugin: the registry
tests point a fake distribution's entry point at it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lerobot_pirl.flow_rl.algorithm import randn
from lerobot_pirl.flow_rl.math import ode_step_mean, time_grid
from lerobot_pirl.policies import PiRLMixin
from lerobot_pirl.recipes.hookspecs import hookimpl

STATE_KEY = "observation.state"


@dataclass
class ToyFlowConfig:
    type: str = "toy_flow"
    state_dim: int = 2
    action_dim: int = 2
    chunk_size: int = 3
    n_action_steps: int = 2
    num_denoising_steps: int = 4
    feature_dim: int = 5
    device: str = "cpu"

    @property
    def model_action_dim(self) -> int:
        return self.action_dim + 1


class ToyFlowPolicy(nn.Module):
    name = "toy_flow"

    def __init__(self, config: ToyFlowConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.Linear(config.state_dim, config.feature_dim)
        self.velocity = nn.Linear(config.feature_dim + config.model_action_dim + 1, config.model_action_dim)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        """The policy's own (SFT) loss: the stock path ``PiRLMixin.forward(model=None)`` keeps."""
        return self.encoder(batch[STATE_KEY]).square().mean(), {}


@dataclass
class ToyObservation:
    features: Tensor  # [B, 1, F]
    state: Tensor  # [B, P]

    def repeat_rows(self, times: int) -> ToyObservation:
        return ToyObservation(
            self.features.repeat_interleave(times, 0), self.state.repeat_interleave(times, 0)
        )


class ToyFlowAdapter:
    policy_type = "toy_flow"

    def __init__(self, policy: ToyFlowPolicy) -> None:
        config = policy.config
        self.policy = policy
        self.chunk_size = config.chunk_size
        self.model_action_dim = config.model_action_dim
        self.real_action_dim = config.action_dim
        self.feature_dim = config.feature_dim
        self.state_dim = config.state_dim
        self.token_dim = config.feature_dim + config.model_action_dim + 1
        self.default_num_steps = config.num_denoising_steps
        self.default_executed_steps = config.n_action_steps

    def encode(self, batch: dict[str, Tensor]) -> ToyObservation:
        state = batch[STATE_KEY].float()
        return ToyObservation(torch.tanh(self.policy.encoder(state)).unsqueeze(1), state)

    def state(self, batch: dict[str, Tensor]) -> Tensor:
        return batch[STATE_KEY].float()

    def _tokens(self, obs: ToyObservation, x_t: Tensor, t: Tensor) -> Tensor:
        features = obs.features.expand(-1, x_t.shape[1], -1)
        time = t.float().view(-1, 1, 1).expand(-1, x_t.shape[1], 1)
        return torch.cat([features, x_t.float(), time], dim=-1)

    def predict_clean_action(self, obs: ToyObservation, x_t: Tensor, t: Tensor) -> Tensor:
        return self.policy.velocity(self._tokens(obs, x_t, t))

    def predict_with_tokens(self, obs: ToyObservation, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self._tokens(obs, x_t, t)
        return self.policy.velocity(tokens), tokens

    def native_chain(
        self,
        obs: ToyObservation,
        num_steps: int,
        generator: torch.Generator | None = None,
        initial_noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The toy has no sampler of its own beyond the Euler ODE."""
        batch, device = obs.state.shape[0], obs.state.device
        shape = (batch, self.chunk_size, self.model_action_dim)
        x = randn(shape, device, torch.float32, generator) if initial_noise is None else initial_noise.float()
        grid, chain = time_grid(num_steps), [x]
        for k in range(num_steps):
            t = grid[k].expand(batch)
            x = ode_step_mean(x, self.predict_clean_action(obs, x, t), t.view(-1, 1, 1), 1.0 / num_steps)
            chain.append(x)
        return torch.stack(chain, dim=1), x

    def env_actions(self, model_actions: Tensor) -> Tensor:
        return model_actions[..., : self.real_action_dim]

    def vlm_parameters(self) -> list[nn.Parameter]:
        return list(self.policy.encoder.parameters())


class PiRLToyFlowPolicy(PiRLMixin, ToyFlowPolicy):
    flow_adapter_class = ToyFlowAdapter


@hookimpl
def lerobot_pirl_register_flow_adapters(registry) -> None:
    registry.add(PiRLToyFlowPolicy)
