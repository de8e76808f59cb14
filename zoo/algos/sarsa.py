"""SARSA: on-policy TD(0) on Q(s, a) with the next action the behaviour policy actually took (Rummery & Niranjan
1994; Sutton & Barto ch. 6.4), learning from each collected batch without replay.

The target is r + gamma * Q(s', a') where a' is the action taken at s' in the same env: the next column of the
`[num_envs, T]` batch. The last column's a' is the first action of the next batch, so one step is carried over
between batches. Where an episode was truncated, no action was ever taken at the final observation: a' is drawn
there from the same exploration policy (its distribution is what would have been taken). Terminated steps do
not bootstrap. Exploration (epsilon-greedy / Boltzmann on the frame clock) comes from the DQN family.
TorchRL has no SARSA loss: `SARSALoss` is zoo's `LossModule`, reading a' from `("next", "action")`.
"""

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import nn
from torch.nn import functional as F
from torchrl.envs import EnvBase
from torchrl.modules import QValueActor
from torchrl.objectives import LossModule

from zoo.agent import Agent, clip_grad, loss_function, make_optimizer
from zoo.algos.dqn import ValueExplorationSpec, make_exploration
from zoo.envs import env_info, learning_keys
from zoo.memory import frames_per_batch
from zoo.nets import build_q_net
from zoo.spec import Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("SARSA",)
SARSA_KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "terminated"),
              ("next", "truncated"))


@register_algorithm_spec(*NAMES, memories=("OnPolicyBatchReplay",),
                         nets=("MLPNet", "DuelingMLPNet", "ConvNet", "DuelingConvNet", "StatelessRecurrentNet"))
@dataclass
class SARSAAlgorithmSpec(ValueExplorationSpec):
    """Hyperparameters of SARSA."""

    training_frequency: int = spec_field(32, "frames collected per on-policy batch (a multiple of num_envs)", low=1)
    training_iter: int = spec_field(1, "gradient steps on each batch", low=1)


def sarsa_pairs(batch: TensorDictBase, carry: TensorDictBase | None,
                policy) -> tuple[TensorDictBase, TensorDictBase]:
    """(transitions with their next action a' at `("next", "action")`, carry for the next batch) from a
    `[num_envs, T]` batch.

    Transitions are the carried step plus all but the last column; a' is the following column's action,
    or a fresh draw from `policy` at the final observation where the episode was truncated.
    """
    steps = batch if carry is None else torch.cat([carry, batch], dim=1)
    transitions, next_action = steps[:, :-1], steps["action"][:, 1:]
    if transitions.shape[-1] == 0:  # a one-step first batch: nothing to pair yet
        return transitions, steps[:, -1:]
    truncated = transitions["next", "truncated"].squeeze(-1) & ~transitions["next", "terminated"].squeeze(-1)
    with torch.no_grad():  # drawn everywhere and kept at truncations: no host sync to test for any
        drawn = policy(TensorDict({"observation": transitions["next", "observation"]},
                                  batch_size=transitions.batch_size))["action"]
    transitions["next", "action"] = torch.where(truncated, drawn, next_action)
    return transitions, steps[:, -1:]


class SARSALoss(LossModule):
    """Mean TD(0) loss of Q(s, a) towards r + gamma * (1 - terminated) * Q(s', a'), a TorchRL `LossModule`.

    Input: `observation`, `action` and under "next" `observation`, `reward`, `terminated` and the action a'
    taken there (`sarsa_pairs` pairs them). The target uses the online Q-network (no target network), as the
    tabular algorithm does.
    """

    @dataclass
    class _AcceptedKeys:
        """Input keys (`set_keys`)."""

        observation: NestedKey = "observation"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        terminated: NestedKey = "terminated"

    value_network: nn.Module
    value_network_params: TensorDict
    target_value_network_params: TensorDict
    out_keys = ["loss"]

    def __init__(self, q_net: nn.Module, *, gamma: float = 0.99, loss_function: str = "l2"):
        super().__init__()
        self.gamma, self.loss_function = gamma, loss_function
        self.convert_to_functional(q_net, "value_network")

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys, q_net = self.tensor_keys, self.value_network
        reward = tensordict.get(("next", keys.reward)).squeeze(-1)
        not_terminal = (~tensordict.get(("next", keys.terminated))).squeeze(-1).to(reward.dtype)
        action, next_action = tensordict.get(keys.action), tensordict.get(("next", keys.action))
        q = q_net(tensordict.get(keys.observation)).gather(-1, action.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            next_q = q_net(tensordict.get(("next", keys.observation)))
            next_q = next_q.gather(-1, next_action.unsqueeze(-1)).squeeze(-1)
            target = reward + self.gamma * not_terminal * next_q
        loss = F.smooth_l1_loss(q, target) if self.loss_function == "smooth_l1" else F.mse_loss(q, target)
        return TensorDict({"loss": loss})


@dataclass(kw_only=True)
class SARSAAgent(Agent):
    """Learns from each batch as it arrives, then discards it."""

    algo_spec: SARSAAlgorithmSpec
    q_net: nn.Module
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
        transitions, self.carry = sarsa_pairs(batch, self.carry, self.policy)
        self.exploration.step(data.numel())
        metrics = {"explore_var": self.exploration.scheduled_value.clone()}
        if transitions.shape[-1] == 0:  # a one-step first batch waits for its next actions
            return metrics
        lr = self.set_lr(frame)
        transitions = transitions.reshape(-1)
        opt, losses = self.optimizers["q"], []
        for _ in range(self.algo_spec.training_iter):
            loss = self.loss(transitions)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_grad(self.params, self.clip_grad_val)
            opt.step()
            losses.append(loss.detach())
        self.num_updates += self.algo_spec.training_iter
        metrics.update(loss=torch.stack(losses).mean(), lr_factor=torch.tensor(lr))
        return metrics

    def state_dict(self) -> dict:
        """`Agent.state_dict` plus the carried step (plain tensors, for `torch.load(weights_only=True)`)."""
        state = super().state_dict()
        if self.carry is not None:
            state["carry"] = self.carry.to_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        carry = state.get("carry")
        self.carry = None if carry is None else TensorDict.from_dict(carry, batch_dims=2)


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble the SARSA agent for `env` from the spec."""
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    info = env_info(env)
    if not info["discrete"]:
        raise SpecError("agent.algorithm.name", f"SARSA needs a discrete action space; {spec.env.name} has "
                        "continuous actions (use SoftActorCritic, TD3 or PPO)")
    q_net = build_q_net(info["obs_shape"], info["num_actions"], net_spec)
    qactor = QValueActor(q_net, in_keys=["observation"], spec=info["action_spec"], action_space="categorical")
    # the unbatched action spec lets the policy also act on [num_envs, T] batches (truncation draws)
    policy, exploration = make_exploration(qactor, q_net, algo_spec, info["action_spec"])
    return SARSAAgent(
        policy=policy, actor=qactor, exploration=exploration,
        loss=SARSALoss(q_net, gamma=algo_spec.gamma,
                       loss_function=loss_function(net_spec)),
        optimizers={"q": make_optimizer(q_net.parameters(), net_spec.optim_spec)},
        frames_per_batch=frames_per_batch(spec), max_frame=spec.env.max_frame,
        lr_scheduler_spec=net_spec.lr_scheduler_spec, algo_spec=algo_spec, q_net=q_net,
        clip_grad_val=net_spec.clip_grad_val, terminated_key=learning_keys(env)[1],
    )
