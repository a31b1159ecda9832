"""A complete third-party on-policy recipe: REINFORCE with a batch-mean baseline for ``gaussian_actor``.

Install this folder next to lerobot-pirl and select ``recipe=reinforce``: lerobot-pirl's on-policy
learner and actors run it on any env block, with LeRobot's processors and transport. The actor
samples one action per env step; each transition carries where it came from
(``reinforce.meta``); the learner collects whole episodes sampled by its current weights, and one
update is the policy gradient of the normalised discounted returns-to-go.
"""

from dataclasses import dataclass

import torch
from lerobot.policies.gaussian_actor.modeling_gaussian_actor import TanhMultivariateNormalDiag
from lerobot.utils.transition import Transition

from lerobot_pirl import ActorDecision, BaseRecipe, OnPolicyConfig, TransitionRejectedError, hookimpl

META = "reinforce.meta"
"""complementary_info key: float32 [policy_version, actor_id, episode_id, decision_index]."""
ACTION_BOUND = 1.0 - 1e-6  # tanh actions strictly inside (-1, 1), so atanh in log_prob stays finite


@dataclass
class ReinforceConfig(OnPolicyConfig):
    lr: float = 3e-4
    """Adam learning rate of the actor."""
    gamma: float = 0.99
    """Discount per env step."""
    episodes_per_update: int = 8
    """Whole episodes, sampled by the current weights, per update."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""

    def validate(self):
        problems = self.runtime_problems()
        if not self.lr > 0:
            problems.append(f"lr={self.lr} (must be > 0)")
        if not 0 <= self.gamma <= 1:
            problems.append(f"gamma={self.gamma} (must be in [0, 1])")
        if self.episodes_per_update < 1:
            problems.append(f"episodes_per_update={self.episodes_per_update} (must be ≥ 1)")
        if not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm={self.max_grad_norm} (must be > 0)")
        if problems:
            raise ValueError("invalid reinforce algorithm config: " + "; ".join(problems))


class GaussianSampler:
    """One tanh-Gaussian action per decision (the gaussian_actor's own sampling)."""

    executed_steps = 1

    def __init__(self, policy):
        self.policy = policy

    def act(self, observations):
        with torch.no_grad():
            actions = self.policy.forward(observations)["action"]
        return actions[:, None, :], [None] * actions.shape[0]


class ReinforceRecipe(BaseRecipe):
    name = "reinforce"
    config_class = ReinforceConfig

    def __init__(self, policy, config):
        config.validate()
        super().__init__(policy, config)
        self._version = 0
        self._sampler = GaussianSampler(policy)
        self._features = {key: tuple(f.shape) for key, f in policy.config.input_features.items()}
        self._action_dim = policy.config.output_features["action"].shape[0]
        self._open = {}  # (actor_id, episode_id) -> transitions of an episode still arriving
        self._episodes = []  # complete episodes of the current version, in arrival order
        self.counts = {"received": 0, "consumed": 0, "dropped": 0}

    # --- learner side ---------------------------------------------------------------------------
    def accept(self, transition):
        meta = (transition.get("complementary_info") or {}).get(META)
        if not isinstance(meta, torch.Tensor) or meta.shape != (4,) or not bool(torch.isfinite(meta).all()):
            raise TransitionRejectedError(
                f"complementary_info[{META!r}] must be 4 finite values "
                "(policy_version, actor_id, episode_id, decision_index)"
            )
        action = transition.get("action")
        if not isinstance(action, torch.Tensor) or action.shape != (self._action_dim,):
            raise TransitionRejectedError(f"action must be a tensor of shape ({self._action_dim},)")
        for part in ("state", "next_state"):
            for key, shape in self._features.items():
                value = (transition.get(part) or {}).get(key)
                if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                    raise TransitionRejectedError(f"{part}[{key!r}] must be a tensor of shape {shape}")
                if not bool(torch.isfinite(value).all()):
                    raise TransitionRejectedError(f"{part}[{key!r}] contains NaN or inf")
        version, actor_id, episode_id, _ = (int(v) for v in meta)
        self.counts["received"] += 1
        if version != self._version:  # strictly on-policy: only the current weights' samples
            self.counts["dropped"] += 1
            return False
        episode = self._open.setdefault((actor_id, episode_id), [])
        episode.append(transition)
        if transition["done"] or transition["truncated"]:
            del self._open[(actor_id, episode_id)]
            self._episodes.append(sorted(episode, key=lambda t: int(t["complementary_info"][META][3])))
        return True

    def rollout_ready(self):
        return len(self._episodes) >= self.config.episodes_per_update

    def take_rollout(self):
        rollout = self._episodes[: self.config.episodes_per_update]
        del self._episodes[: self.config.episodes_per_update]
        return rollout

    def data_counters(self):
        pending = sum(len(e) for e in self._episodes) + sum(len(e) for e in self._open.values())
        return {**self.counts, "pending": pending}

    def build_optimizers(self):
        self.optimizer = torch.optim.Adam(self.policy.actor.parameters(), lr=self.config.lr)
        return {"reinforce": self.optimizer}

    def update_step(self, batches, step):
        episodes = next(batches)
        transitions = [t for episode in episodes for t in episode]
        returns = torch.cat(
            [discounted_returns([t["reward"] for t in e], self.config.gamma) for e in episodes]
        )
        observations = {key: torch.stack([t["state"][key] for t in transitions]) for key in self._features}
        actions = torch.stack([t["action"] for t in transitions]).clamp(-ACTION_BOUND, ACTION_BOUND)
        advantages = (returns - returns.mean()) / (returns.std(unbiased=False) + 1e-8)
        log_prob = self.log_prob(observations, actions)
        loss = -(log_prob * advantages).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.actor.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self._version += 1
        self._open.clear()  # anything still arriving was sampled by the old weights
        self.counts["consumed"] += len(transitions)
        return {
            "loss_actor": float(loss.detach()),
            "actor_grad_norm": float(grad_norm),
            "log_prob_mean": float(log_prob.detach().mean()),
            "episode_return_mean": sum(sum(t["reward"] for t in e) for e in episodes) / len(episodes),
            "policy_version": float(self._version),
        }

    def log_prob(self, observations, actions):
        """log π(a|s) of the gaussian_actor's tanh-Gaussian, with gradients into its encoder and MLP
        (the distribution ``Policy.forward`` samples from, rebuilt for given actions)."""
        actor = self.policy.actor
        hidden = actor.network(actor.encoder(observations, cache=None, detach=False))
        mean = actor.mean_layer(hidden)
        if actor.fixed_std is None:
            std = torch.exp(actor.std_layer(hidden)).clamp(actor.std_min, actor.std_max)
        else:
            std = actor.fixed_std.expand_as(mean)
        return TanhMultivariateNormalDiag(loc=mean, scale_diag=std).log_prob(actions)

    # --- actor side -----------------------------------------------------------------------------
    @property
    def policy_version(self):
        return self._version

    def sampler(self):
        return self._sampler

    def encode_decision(self, decision: ActorDecision):
        keep = self._features  # only what the policy reads travels
        meta = [decision.policy_version, decision.actor_id, decision.episode_id, decision.decision_index]
        return Transition(
            state={key: decision.observation[key] for key in keep},
            action=decision.actions[0].detach().to("cpu", torch.float32),
            reward=float(sum(decision.rewards)),
            next_state={key: decision.next_observation[key] for key in keep},
            done=bool(decision.terminated),
            truncated=bool(decision.truncated),
            complementary_info={META: torch.tensor(meta, dtype=torch.float32)},
        )

    # --- weights and checkpoints ------------------------------------------------------------------
    def actor_weights(self):
        return {**super().actor_weights(), "policy_version": torch.tensor(self._version)}

    def load_actor_weights(self, weights, device):
        super().load_actor_weights(weights, device)
        self._version = int(weights["policy_version"])

    def state_dict(self):
        return {"policy_version": torch.tensor(self._version)}

    def load_state_dict(self, state, device):
        self._version = int(state["policy_version"])


def discounted_returns(rewards, gamma):
    """G_t = r_t + γ·G_{t+1} over one episode (G after its last step is 0)."""
    returns, running = [], 0.0
    for reward in reversed(rewards):
        running = float(reward) + gamma * running
        returns.append(running)
    return torch.tensor(returns[::-1], dtype=torch.float32)


@hookimpl
def lerobot_pirl_register_recipes(registry):
    registry.add(ReinforceRecipe)
