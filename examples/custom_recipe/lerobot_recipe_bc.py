"""A complete third-party recipe: regress a gaussian_actor's mean action onto replayed actions.

Select it with ``recipe=bc`` once this package is installed next to lerobot-pirl.
"""

from dataclasses import dataclass

import torch

from lerobot_pirl import BaseRecipe, RecipeConfig, hookimpl


@dataclass
class BCConfig(RecipeConfig):
    lr: float = 1e-3
    """Adam learning rate for the actor."""


class BCRecipe(BaseRecipe):
    name = "bc"
    config_class = BCConfig

    def __init__(self, policy, config):
        super().__init__(policy, config)
        self.updates = torch.zeros((), dtype=torch.long)  # recipe state, checkpointed with the run

    def build_optimizers(self):
        self.optimizer = torch.optim.Adam(self.policy.actor.parameters(), lr=self.config.lr)
        return {"actor": self.optimizer}

    def update_step(self, batches, step):
        batch = next(batches)
        _, _, mean = self.policy.actor(batch["state"])
        loss = torch.nn.functional.mse_loss(torch.tanh(mean), batch["action"])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        return {"loss_bc": loss.item(), "updates": float(self.updates)}

    def actor_weights(self):
        return {"policy": {k: v.cpu() for k, v in self.policy.actor.state_dict().items()}}

    def load_actor_weights(self, weights, device):
        self.policy.actor.load_state_dict(weights["policy"])

    def state_dict(self):
        return {"updates": self.updates}

    def load_state_dict(self, state, device):
        self.updates.copy_(state["updates"])


@hookimpl
def lerobot_pirl_register_recipes(registry):
    registry.add(BCRecipe)
