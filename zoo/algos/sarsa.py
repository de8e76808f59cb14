"""SARSA: on-policy TD(0) on Q(s, a) with the next action the behaviour policy actually took (Rummery & Niranjan
1994; Sutton & Barto ch. 6.4), learning from each collected batch without replay.

The target is r + gamma * Q(s', a') where a' is the action taken at s' in the same env: the next column of the
`[num_envs, T]` batch. The last column's a' is the first action of the next batch, so one step is carried over
between batches. Where an episode was truncated, no action was ever taken at the final observation: a' is drawn
there from the same exploration policy (its distribution is what would have been taken). Terminated steps do
not bootstrap. Exploration (epsilon-greedy / Boltzmann on the frame clock) comes from the DQN family.
TorchRL has no SARSA loss, so the target is plain torch; `DQNLoss` holds the Q-network for checkpoints.
"""

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torch.nn import functional as F
from torchrl.envs import EnvBase
from torchrl.modules import QValueActor
from torchrl.objectives import DQNLoss

from zoo.agent import Agent, clip_grad, make_optimizer
from zoo.algos.dqn import ValueExplorationSpec, make_exploration
from zoo.envs import env_info, learning_keys
from zoo.nets import build_q_net
from zoo.schedules import Schedule
from zoo.spec import Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("SARSA",)
SARSA_KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "terminated"),
              ("next", "truncated"))


@register_algorithm_spec(*NAMES, memories=("OnPolicyBatchReplay",),
                         nets=("MLPNet", "DuelingMLPNet", "ConvNet", "DuelingConvNet"))
@dataclass
class SARSAAlgorithmSpec(ValueExplorationSpec):
    """Hyperparameters of SARSA."""

    training_frequency: int = spec_field(32, "frames collected per on-policy batch (a multiple of num_envs)", low=1)
    training_iter: int = spec_field(1, "gradient steps on each batch", low=1)


def sarsa_pairs(batch: TensorDictBase, carry: TensorDictBase | None,
                policy) -> tuple[TensorDictBase, torch.Tensor, TensorDictBase]:
    """(transitions, next actions a', carry for the next batch) from a `[num_envs, T]` batch.

    Transitions are the carried step plus all but the last column; a' is the following column's action,
    or a fresh draw from `policy` at the final observation where the episode was truncated.
    """
    steps = batch if carry is None else torch.cat([carry, batch], dim=1)
    transitions, next_action = steps[:, :-1], steps["action"][:, 1:]
    if transitions.shape[-1] == 0:  # a one-step first batch: nothing to pair yet
        return transitions, next_action, steps[:, -1:]
    truncated = transitions["next", "truncated"].squeeze(-1) & ~transitions["next", "terminated"].squeeze(-1)
    with torch.no_grad():  # drawn everywhere and kept at truncations: no host sync to test for any
        drawn = policy(TensorDict({"observation": transitions["next", "observation"]},
                                  batch_size=transitions.batch_size))["action"]
    return transitions, torch.where(truncated, drawn, next_action), steps[:, -1:]


def sarsa_loss(q_net: nn.Module, transitions: TensorDictBase, next_action: torch.Tensor, gamma: float,
               huber: bool) -> torch.Tensor:
    """Mean TD(0) loss of Q(s, a) towards r + gamma * (1 - terminated) * Q(s', a')."""
    reward = transitions["next", "reward"].squeeze(-1)
    not_terminal = (~transitions["next", "terminated"]).squeeze(-1).to(reward.dtype)
    q = q_net(transitions["observation"]).gather(-1, transitions["action"].unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        next_q = q_net(transitions["next", "observation"]).gather(-1, next_action.unsqueeze(-1)).squeeze(-1)
        target = reward + gamma * not_terminal * next_q
    return F.smooth_l1_loss(q, target) if huber else F.mse_loss(q, target)


@dataclass(kw_only=True)
class SARSAAgent(Agent):
    """Learns from each batch as it arrives, then discards it."""

    algo_spec: SARSAAlgorithmSpec
    q_net: nn.Module
    explore_var: torch.Tensor  # epsilon or temperature buffer of the exploration module
    huber: bool = False
    clip_grad_val: float | None = None
    terminated_key: str = "terminated"  # ("next", key) that stops bootstrapping (Atari: also a lost life)
    carry: TensorDictBase | None = None  # the previous batch's last step, waiting for its next action

    def __post_init__(self):
        self.params = list(self.q_net.parameters())

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        batch = data.select(*SARSA_KEYS)
        if self.terminated_key != "terminated":
            batch["next", "terminated"] = data["next", self.terminated_key]
        # pair with next actions before the schedule moves: a truncation's a' comes from the policy that acted
        transitions, next_action, self.carry = sarsa_pairs(batch, self.carry, self.policy)
        explore_var = self.schedules["explore_var"](frame)
        self.explore_var.fill_(explore_var)
        if transitions.shape[-1] == 0:  # a one-step first batch waits for its next actions
            return {"explore_var": torch.tensor(explore_var)}
        lr = self.set_lr(frame)
        transitions, next_action = transitions.reshape(-1), next_action.reshape(-1)
        opt, losses = self.optimizers["q"], []
        for _ in range(self.algo_spec.training_iter):
            loss = sarsa_loss(self.q_net, transitions, next_action, self.algo_spec.gamma, self.huber)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_grad(self.params, self.clip_grad_val)
            opt.step()
            losses.append(loss.detach())
        self.num_updates += self.algo_spec.training_iter
        return {"explore_var": torch.tensor(explore_var), "loss": torch.stack(losses).mean(),
                "lr_factor": torch.tensor(lr)}


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble the SARSA agent for `env` from the spec."""
    algo_spec, net_spec, mem_spec = spec.agent.algorithm, spec.agent.net, spec.agent.memory
    info = env_info(env)
    if not info["discrete"]:
        raise SpecError("agent.algorithm.name", f"SARSA needs a discrete action space; {spec.env.name} has "
                        "continuous actions (use SoftActorCritic, TD3 or PPO)")
    if mem_spec.name != "OnPolicyBatchReplay":
        raise SpecError("agent.memory.name", f"SARSA learns on-policy: needs OnPolicyBatchReplay, got {mem_spec.name}")
    q_net = build_q_net(info["obs_shape"], info["num_actions"], net_spec)
    qactor = QValueActor(q_net, in_keys=["observation"], spec=info["action_spec"], action_space="categorical")
    # the unbatched action spec lets the policy also act on [num_envs, T] batches (truncation draws)
    policy, explore_var = make_exploration(qactor, algo_spec, info["action_spec"])
    n = spec.env.num_envs
    return SARSAAgent(
        policy=policy, actor=qactor,
        loss=DQNLoss(qactor, delay_value=False, action_space="categorical"),
        optimizers={"q": make_optimizer(q_net.parameters(), net_spec.optim_spec)},
        frames_per_batch=max(n, -(-algo_spec.training_frequency // n) * n), max_frame=spec.env.max_frame,
        schedules={"explore_var": Schedule(algo_spec.explore_var_spec)},
        lr_scheduler_spec=net_spec.lr_scheduler_spec, algo_spec=algo_spec, q_net=q_net, explore_var=explore_var,
        huber=net_spec.loss_spec.name == "SmoothL1Loss", clip_grad_val=net_spec.clip_grad_val,
        terminated_key=learning_keys(env)[1],
    )
