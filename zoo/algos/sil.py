"""Self-imitation learning (Oh et al. 2018): A2C (`SIL`) or PPO (`PPOSIL`), plus a replay of past episodes'
transitions with their Monte-Carlo returns, learned from only where the return beat the critic.

After each on-policy update (A2C's or PPO's own, unchanged), the episodes that ended in the batch (their
earlier steps carried over from previous batches, as REINFORCE's `EpisodeCarry`) enter the self-imitation
replay with their discounted returns R, and `training_iter` replayed batches each take `training_batch_iter`
gradient steps (`zoo.memory.replay_updates`) of the self-imitation loss (`SILLoss`): policy
-log pi(a|s) * max(R - V(s), 0), value 0.5 * max(R - V(s), 0)^2, through the on-policy agent's own networks and
optimizers. With `agent.memory.sil_replay_name: PrioritizedReplay` rows are drawn in proportion to their clipped
advantage max(R - V, 0) (plus epsilon), and the losses are weighted by importance sampling, as the paper.

Differences from the paper: returns stop at truncation as well as termination (as SLM-Lab's; the replay keeps
no value to bootstrap from), and an episode enters the replay when it ends, not step by step.
"""

from dataclasses import dataclass, replace

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.envs import EnvBase
from torchrl.objectives import LossModule

from zoo.agent import Agent, weighted_mean
from zoo.algos import a2c, ppo
from zoo.algos.actor_critic import optimizer_step
from zoo.algos.reinforce import EpisodeCarry, monte_carlo_returns
from zoo.envs import learning_keys
from zoo.memory import make_replay_buffer, priority_beta, replay_updates
from zoo.schedules import Schedule
from zoo.spec import Spec, register_algorithm_spec, spec_field

NAMES = ("SIL", "PPOSIL")
REPLAY_KEYS = ("observation", "action", "return")


@dataclass
class SelfImitationSpec:
    """SLM-Lab's self-imitation fields, shared by SIL (on A2C's) and PPOSIL (on PPO's)."""

    sil_policy_loss_coef: float = spec_field(1.0, "weight of the self-imitation policy loss", low=0.0)
    sil_val_loss_coef: float = spec_field(0.01, "weight of the self-imitation value loss (the paper's beta^sil)",
                                          low=0.0)
    training_iter: int = spec_field(4, "self-imitation batches replayed after each on-policy update", low=1)
    training_batch_iter: int = spec_field(1, "gradient steps on each replayed batch", low=1)


SUPPORT = dict(memories=("OnPolicyBatchReplay", "OnPolicyReplay"), nets=("MLPNet", "ConvNet", "StatelessRecurrentNet"),
               shared=True, split_optims=True, sil_replay=True, head_gains=True)


@register_algorithm_spec("SIL", **SUPPORT)
@dataclass
class SILAlgorithmSpec(a2c.A2CAlgorithmSpec, SelfImitationSpec):
    """A2C's hyperparameters plus the self-imitation ones."""


@register_algorithm_spec("PPOSIL", **SUPPORT)
@dataclass
class PPOSILAlgorithmSpec(ppo.PPOAlgorithmSpec, SelfImitationSpec):
    """PPO's hyperparameters plus the self-imitation ones."""


class SILLoss(LossModule):
    """The self-imitation loss of replayed `observation`, `action`, `return` rows (Oh et al. 2018, eq. 2-4).

    `loss_sil_policy` = policy_coef * mean(-log pi(a|s) * max(R - V(s), 0)), the clipped advantage held
    constant; `loss_sil_value` = value_coef * mean(0.5 * max(R - V(s), 0)^2); means weighted by
    `priority_weight` when the rows come from prioritized replay. `sil_advantage` (per row, detached) is their
    new priority. The actor (a TorchRL probabilistic actor) and critic (writing `state_value`) are called as
    modules: they are the on-policy agent's, and so are their parameters."""

    def __init__(self, actor: nn.Module, critic: nn.Module, *, policy_coef: float, value_coef: float):
        super().__init__()
        self.actor_network, self.critic_network = actor, critic
        self.policy_coef, self.value_coef = policy_coef, value_coef

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        log_prob = self.actor_network.get_dist(tensordict.copy()).log_prob(tensordict.get("action"))
        value = self.critic_network(tensordict.select(*self.critic_network.in_keys).copy()).get("state_value")
        advantage = (tensordict.get("return") - value).squeeze(-1).clamp_min(0.0)
        weight = tensordict.get("priority_weight", None)
        policy = -log_prob.reshape(advantage.shape) * advantage.detach()
        return TensorDict({
            "loss_sil_policy": self.policy_coef * weighted_mean(policy, weight),
            "loss_sil_value": self.value_coef * weighted_mean(0.5 * advantage.pow(2), weight),
            "sil_advantage": advantage.detach()})


@dataclass(kw_only=True)
class SILAgent(Agent):
    """The on-policy agent's update, then self-imitation steps on replayed episodes (composition: `on_policy`
    keeps its own update; its policy, actor, loss and optimizers are this agent's)."""

    on_policy: Agent
    sil_loss: SILLoss
    carry: EpisodeCarry
    algo_spec: SelfImitationSpec
    params: list[nn.Parameter]
    batch_size: int
    beta: Schedule | None = None
    clip_grad_val: float | None = None

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        metrics = self.on_policy.update(data, frame)
        episodes = self.carry.complete(data)
        if episodes.shape[0]:
            episodes["return"] = monte_carlo_returns(episodes, self.on_policy.algo_spec.gamma, self.carry.done_key)
            self.buffer.extend(episodes.select(*REPLAY_KEYS))
        if len(self.buffer) < self.batch_size:
            return metrics
        beta = self.beta(frame) if self.beta is not None else None
        steps = replay_updates(self.buffer, self.batch_size, self.algo_spec.training_iter, beta, self.sil_step,
                               reuse=self.algo_spec.training_batch_iter)
        policy, value, advantage = torch.stack(steps).mean(0)
        return {**metrics, "loss_sil_policy": policy, "loss_sil_value": value, "sil_advantage": advantage}

    def sil_step(self, batch: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """One self-imitation gradient step on a replayed batch; (statistics, the rows' new priorities)."""
        out = self.sil_loss(batch)
        optimizer_step(self.optimizers, out["loss_sil_policy"] + out["loss_sil_value"], self.params,
                       self.clip_grad_val, self.on_policy.clip_per_net)
        self.num_updates += 1
        stats = torch.stack([out["loss_sil_policy"].detach(), out["loss_sil_value"].detach(),
                             out["sil_advantage"].mean()])
        return stats, out["sil_advantage"]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "on_policy_updates": self.on_policy.num_updates,
                "waiting_steps": self.carry.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.on_policy.num_updates = state["on_policy_updates"]
        self.carry.load_state_dict(state["waiting_steps"])


def build(spec: Spec, env: EnvBase) -> Agent:
    """A2C (SIL) or PPO (PPOSIL) for `env` from the spec, with the self-imitation replay and loss."""
    algo_spec, net_spec, memory_spec = spec.agent.algorithm, spec.agent.net, spec.agent.memory
    base = (a2c if algo_spec.name == "SIL" else ppo).build(spec, env)
    loss = SILLoss(base.loss.actor_network, base.loss.critic_network, policy_coef=algo_spec.sil_policy_loss_coef,
                   value_coef=algo_spec.sil_val_loss_coef)
    replay_spec = replace(memory_spec, name=memory_spec.sil_replay_name)
    return SILAgent(
        policy=base.policy, actor=base.actor, loss=base.loss, optimizers=base.optimizers,
        frames_per_batch=base.frames_per_batch, max_frame=base.max_frame, schedules=base.schedules,
        lr_scheduler_spec=base.lr_scheduler_spec, buffer=make_replay_buffer(replay_spec, env=env),
        on_policy=base, sil_loss=loss, carry=EpisodeCarry(done_key=learning_keys(env)[0]), algo_spec=algo_spec,
        params=base.params, batch_size=memory_spec.batch_size,
        beta=priority_beta(replace(spec, agent=replace(spec.agent, memory=replay_spec))),
        clip_grad_val=net_spec.clip_grad_val,
    )
