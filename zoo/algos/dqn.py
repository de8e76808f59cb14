"""DQN family: VanillaDQN (no target net), DQN (target net), DoubleDQN (online net picks, target scores).

Mnih et al. 2015; van Hasselt et al. 2016; dueling heads (Wang et al. 2016) via `agent.net.type`;
prioritized replay (Schaul et al. 2016) via `agent.memory.name`.

Built from TorchRL: `QValueActor` (greedy actor), `ScheduledEGreedy` (TorchRL's `EGreedyModule` on the spec's
schedule, stepped with the frames collected), `DQNFamilyLoss` (a `LossModule`, below), `HardUpdate` /
`SoftUpdate`, `TensorDictReplayBuffer` with a uniform or `PrioritizedSampler`; n-step returns from TorchRL's
`MultiStepTransform` run over each `[num_envs, T]` batch before it is stored flat (`NStepTransform` fixes its
end-of-window flags; a flat storage samples ~2x faster than the `ndim=2` one the transform would otherwise need).
A TorchRL loop takes `policy`, `actor`, `loss`, `target_updater` and `exploration` from `zoo.build` as they are
(examples/torchrl_loop.py). `agent.net.type: RecurrentNet` makes it DRQN (Hausknecht & Stone 2015): replayed
sequences with an optional burn-in, zoo/algos/drqn.py.
"""

import copy
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torch.nn import functional as F
from torchrl.data import OneHot, TensorSpec
from torchrl.envs import EnvBase, ExplorationType, exploration_type
from torchrl.modules import QValueActor
from torchrl.objectives import HardUpdate, LossModule, SoftUpdate, ValueEstimators

from zoo.agent import Agent, clip_grad, loss_function, make_optimizer, regression, weighted_mean
from zoo.algos.drqn import (
    build_recurrent_q_net,
    check_drqn,
    make_sequence_replay,
    sequence_td_loss,
    store_steps,
)
from zoo.envs import env_info, learning_keys
from zoo.exploration import BoltzmannExploration, ScheduledEGreedy
from zoo.memory import (
    FrameStackReplay,
    NStepTransform,
    ReplayPhase,
    frames_per_batch,
    make_replay_buffer,
    store_transitions,
)
from zoo.nets import build_q_net
from zoo.schedules import Schedule
from zoo.spec import AlgorithmSpec, ScheduleSpec, Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("VanillaDQN", "DQN", "DoubleDQN")


@dataclass
class ValueExplorationSpec(AlgorithmSpec):
    """Exploration of value-based learners (DQN family, SARSA)."""

    action_policy: str = spec_field("epsilon_greedy", "exploration", choices=("epsilon_greedy", "boltzmann"))
    explore_var_spec: ScheduleSpec = spec_field(
        ScheduleSpec(name="linear_decay", start_val=1.0, end_val=0.05, end_step=10000),
        "epsilon (epsilon_greedy) or temperature (boltzmann) on the frame clock")


@register_algorithm_spec(*NAMES, memories=("Replay", "PrioritizedReplay"),
                         nets=("MLPNet", "DuelingMLPNet", "ConvNet", "DuelingConvNet", "RecurrentNet",
                               "StatelessRecurrentNet"),
                         targets=("replace", "polyak"), one_hot_actions=True)
@dataclass
class DQNAlgorithmSpec(ValueExplorationSpec):
    """Hyperparameters of the DQN family."""

    training_frequency: int = spec_field(256, "frames collected between training phases (a multiple of num_envs)",
                                         low=1)
    training_iter: int = spec_field(32, "replayed batches per training phase", low=1)
    training_batch_iter: int = spec_field(1, "gradient steps on each replayed batch (SLM-Lab's; targets recomputed "
                                          "each step)", low=1)
    training_start_step: int = spec_field(1000, "frames of uniform random actions before learning starts", low=0)
    n_step: int = spec_field(1, "steps of reward summed before bootstrapping (n-step returns)", low=1)
    burn_in: int = spec_field(0, "RecurrentNet: first steps of each replayed sequence (agent.net.seq_len steps) that "
                              "only warm up the hidden state: no loss, no gradient (R2D2's burn-in)", low=0)


class DQNFamilyLoss(LossModule):
    """TD loss of the DQN family (DQN, DoubleDQN, VanillaDQN), a TorchRL `LossModule`: TensorDict in, `loss` out.

    The same maths as TorchRL's `DQNLoss` with a TD(0) estimator (tests/unit/test_dqn.py keeps `DQNLoss` as the
    oracle): the target bootstraps through truncation and stops at termination, discounted by
    `gamma ** steps_to_next_obs` after an n-step transform; DoubleDQN lets the online net pick the next action
    and the target net score it (van Hasselt et al. 2016). Prioritized replay: each sample is weighted by
    `priority_weight` as mean(w * loss) (Schaul et al. 2016), and |TD error| is written into the input under
    `td_error`, as `DQNLoss` does, so `TensorDictPrioritizedReplayBuffer.update_tensordict_priority` works.
    Actions may be integers or one-hot, whichever the env's action spec uses. With a recurrent Q-net
    (`state_keys`, zoo/algos/drqn.py) the input is a `[B, L]` batch of replayed sequences and the loss is
    `sequence_td_loss`'s (burn-in, steps after an episode end masked).

    Why not `DQNLoss` itself: on CPU the update is DQN's bottleneck, and `DQNLoss` evaluates the Q-network
    through `QValueActor` and functional calls over its parameter TensorDicts, several times the cost of the
    plain forward passes here. The parameters are laid out as TorchRL expects (`value_network_params`,
    `target_value_network_params`), so `HardUpdate` / `SoftUpdate` maintain the target; the target net is a
    copy of the Q-network whose tensors *are* those target parameters, updated in place.
    """

    @dataclass
    class _AcceptedKeys:
        """Input keys (`set_keys`); `priority` is written to."""

        observation: NestedKey = "observation"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"
        priority_weight: NestedKey = "priority_weight"
        priority: NestedKey = "td_error"

    value_network: nn.Module
    value_network_params: TensorDictParams
    target_value_network_params: TensorDictParams
    out_keys = ["loss"]

    def __init__(self, q_net: nn.Module, *, gamma: float = 0.99, double_dqn: bool = False,
                 delay_value: bool = True, loss_function: str = "l2", state_keys: tuple[str, ...] = (),
                 burn_in: int = 0):
        super().__init__()
        if loss_function not in ("l2", "smooth_l1"):
            raise ValueError(f"loss_function must be 'l2' or 'smooth_l1', got {loss_function!r}")
        self.gamma, self.double_dqn, self.delay_value = gamma, double_dqn, delay_value
        self.loss_function = loss_function
        self.state_keys, self.burn_in = tuple(state_keys), burn_in
        self.convert_to_functional(q_net, "value_network", create_target_params=delay_value)
        self.target_net = None
        if delay_value:  # a copy of the Q-net that evaluates the target tensors in place (no functional call)
            target_net = copy.deepcopy(q_net).requires_grad_(False)
            self._modules["target_value_network_params"].to_module(target_net)  # (getattr warns: no updater yet)
            self.__dict__["target_net"] = target_net  # not a submodule: its tensors are the target params

    @property
    def in_keys(self) -> list[NestedKey]:
        keys = self.tensor_keys
        return [keys.observation, keys.action, ("next", keys.observation), ("next", keys.reward),
                ("next", keys.terminated)]

    def _apply(self, *args, **kwargs):
        """`.to(device)` and the like also move the target copy's view onto the moved target parameters."""
        out = super()._apply(*args, **kwargs)
        if self.target_net is not None:
            self._modules["target_value_network_params"].to_module(self.target_net)
        return out

    def make_value_estimator(self, value_type: ValueEstimators | None = None, **hyperparams) -> "DQNFamilyLoss":
        """TD(0) only (n-step through `steps_to_next_obs`); sets `gamma` as `DQNLoss.make_value_estimator` does."""
        if value_type not in (None, ValueEstimators.TD0):
            raise NotImplementedError(f"{type(self).__name__} computes TD(0) targets, not {value_type}")
        self.gamma = hyperparams.get("gamma", self.gamma)
        return self

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys, q_net = self.tensor_keys, self.value_network
        if self.state_keys:
            loss, td_error = sequence_td_loss(q_net, self.target_net, tensordict, gamma=self.gamma,
                                              double_dqn=self.double_dqn, burn_in=self.burn_in,
                                              huber=self.loss_function == "smooth_l1", state_keys=self.state_keys)
            tensordict.set(keys.priority, td_error)
            return TensorDict({"loss": loss})
        action, reward = tensordict.get(keys.action), tensordict.get(("next", keys.reward)).squeeze(-1)
        not_terminal = (~tensordict.get(("next", keys.terminated))).squeeze(-1).to(reward.dtype)
        q_values = q_net(tensordict.get(keys.observation))
        if action.shape == q_values.shape:  # one-hot actions
            q = (q_values * action).sum(-1)
        else:
            q = q_values.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            next_obs = tensordict.get(("next", keys.observation))
            next_q = (q_net if self.target_net is None else self.target_net)(next_obs)
            if self.double_dqn:
                next_value = next_q.gather(-1, q_net(next_obs).argmax(-1, keepdim=True)).squeeze(-1)
            else:
                next_value = next_q.max(-1).values
            steps = tensordict.get(keys.steps_to_next_obs, None)
            discount = self.gamma if steps is None else self.gamma ** steps.reshape(reward.shape).to(reward.dtype)
            target = reward + discount * not_terminal * next_value
        tensordict.set(keys.priority, (q - target).detach().abs())
        elementwise = regression(q, target, self.loss_function == "smooth_l1")
        return TensorDict({"loss": weighted_mean(elementwise, tensordict.get(keys.priority_weight, None))})


class QPolicy(TensorDictModuleBase):
    """The collector's policy of the value-based family: `TensorDictSequential(qactor, exploration)` in one
    plain-torch pass.

    Q-values, argmax and the exploration draw (epsilon-greedy: one independent coin and uniform action per env;
    Boltzmann: one softmax draw per env), on the exploration module's own schedule, writing `action` as a plain
    tensor. Why: per step the sequence's TensorDict plumbing (QValueModule, EGreedyModule's spec draw, and
    tensordict's per-output `from_any` probe, see `zoo.algos.actor_critic.PlainPolicy`) costs several times a
    small Q-net. Its parameters are those two modules under the sequence's own names (`module.0`, `module.1`),
    so its state dict is the sequence's; outside `ExplorationType.RANDOM` it is the greedy `qactor`. A recurrent
    Q-net (`q_net` a TensorDict module, zoo/algos/drqn.py) runs as TorchRL's module, carrying the hidden state.
    """

    def __init__(self, qactor: QValueActor, exploration: nn.Module, q_net: nn.Module, one_hot: bool = False):
        super().__init__()
        self.module = nn.ModuleList([qactor, exploration])
        self.nets, self.one_hot = (q_net,), one_hot  # qactor's own network, held unregistered (not counted twice)
        self.recurrent = isinstance(q_net, TensorDictModuleBase)
        self.in_keys = list(q_net.in_keys) if self.recurrent else ["observation"]
        self.out_keys = ["action", *(key for key in q_net.out_keys if isinstance(key, tuple))] if self.recurrent \
            else ["action"]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        qactor, exploration = self.module
        if exploration_type() not in (ExplorationType.RANDOM, None):
            return qactor(tensordict)
        if self.recurrent:  # the step from the carried hidden state, writing the next one
            q = self.nets[0](tensordict).get("action_value")
        else:
            q = self.nets[0](tensordict.get("observation"))
        batch, n = q.shape[:-1], q.shape[-1]
        if isinstance(exploration, BoltzmannExploration):
            probs = torch.softmax(q / exploration.temperature.clamp_min(1e-6), dim=-1)
            action = torch.multinomial(probs.reshape(-1, n), 1).reshape(batch)
        else:
            explore = torch.rand(batch, device=q.device) < exploration.eps
            action = torch.where(explore, torch.randint(n, batch, device=q.device), q.argmax(-1))
        tensordict.set("action", F.one_hot(action, n) if self.one_hot else action)
        return tensordict


def make_exploration(qactor: QValueActor, q_net: nn.Module, algo_spec: ValueExplorationSpec,
                     action_spec: TensorSpec) -> tuple[QPolicy, nn.Module]:
    """The exploration policy around the greedy actor, and its exploration module (`step(frames)` anneals it)."""
    schedule = Schedule(algo_spec.explore_var_spec)
    if algo_spec.action_policy == "boltzmann":
        exploration = BoltzmannExploration(schedule)
    else:
        exploration = ScheduledEGreedy(action_spec, schedule)
    return QPolicy(qactor, exploration, q_net, one_hot=isinstance(action_spec, OneHot)), exploration


@dataclass(kw_only=True)
class DQNAgent(Agent):
    """Stores each batch, then runs `training_batch_iter` gradient steps on each of `training_iter` replayed
    batches."""

    q_net: nn.Module
    replay: ReplayPhase  # when and how much to learn from the replay buffer
    clip_grad_val: float | None = None
    nstep: NStepTransform | None = None  # n-step windows, applied to each batch before storing
    terminated_key: str = "terminated"  # ("next", key) that stops bootstrapping (Atari: also a lost life)
    seq_len: int | None = None  # RecurrentNet: steps per replayed sequence (the buffer stores steps in order)

    def __post_init__(self):
        self.params = list(self.q_net.parameters())

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        if self.seq_len is None:
            store_transitions(self.buffer, data, self.terminated_key, self.nstep)
        else:
            store_steps(self.buffer, data, self.terminated_key, self.loss.state_keys)
        self.exploration.step(data.numel())
        return {"explore_var": self.exploration.scheduled_value.clone(),
                **self.replay.run(self.buffer, frame, self.gradient_step, self.set_lr)}

    def gradient_step(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One TD step on a replayed batch: (metrics, per-sample |TD error|)."""
        if self.seq_len is not None:  # the sampler's consecutive windows as [sequences, seq_len]
            batch = batch.reshape(-1, self.seq_len)
        loss = self.loss(batch)["loss"]
        opt = self.optimizers["q"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad(self.params, self.clip_grad_val)
        opt.step()
        if self.target_updater is not None:
            self.target_updater.step()
        self.num_updates += 1
        return {"loss": loss.detach()}, batch["td_error"].reshape(-1)


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble the DQN-family agent for `env` from the spec."""
    algo_spec, net_spec, mem_spec = spec.agent.algorithm, spec.agent.net, spec.agent.memory
    info = env_info(env)
    if not info["discrete"]:
        raise SpecError("agent.algorithm.name", f"{algo_spec.name} needs a discrete action space; "
                        f"{spec.env.name} has continuous actions (use SoftActorCritic, TD3 or PPO)")
    recurrent, state_keys = net_spec.type == "RecurrentNet", ()
    if recurrent:  # TorchRL's recurrent module acts (q_module); the loss runs its plain-torch twin (q_net)
        check_drqn(spec)
        q_module, q_net, state_keys = build_recurrent_q_net(info["obs_shape"], info["num_actions"], net_spec)
    else:
        if algo_spec.burn_in:
            raise SpecError("agent.algorithm.burn_in", f"is not used by {net_spec.type} (RecurrentNet only); remove it")
        q_module = q_net = build_q_net(info["obs_shape"], info["num_actions"], net_spec)
    qactor = QValueActor(q_module, in_keys=["observation"], spec=info["action_spec"],
                         action_space="one_hot" if info["one_hot"] else "categorical")
    policy, exploration = make_exploration(qactor, q_module, algo_spec, env.action_spec)

    use_target = algo_spec.name != "VanillaDQN"
    loss = DQNFamilyLoss(q_net, gamma=algo_spec.gamma, double_dqn=algo_spec.name == "DoubleDQN",
                         delay_value=use_target, loss_function=loss_function(net_spec), state_keys=state_keys,
                         burn_in=algo_spec.burn_in)
    target_updater = None
    if use_target and net_spec.update_type == "polyak":
        target_updater = SoftUpdate(loss, tau=net_spec.polyak_coef)
    elif use_target:  # replace every update_frequency frames, counted in gradient steps
        steps = algo_spec.training_iter * algo_spec.training_batch_iter  # gradient steps per phase
        interval = max(1, round(net_spec.update_frequency * steps / frames_per_batch(spec)))
        target_updater = HardUpdate(loss, value_network_update_interval=interval)

    if recurrent:  # each env's steps in order, replayed as sequences
        buffer = make_sequence_replay(mem_spec, spec.env.num_envs, net_spec.seq_len, env.device or "cpu")
    else:
        buffer = make_replay_buffer(mem_spec, env=env)  # stacked frames: each frame stored once
    if algo_spec.n_step > 1 and isinstance(buffer, FrameStackReplay):
        raise SpecError("agent.algorithm.n_step", "n-step returns are not supported on stacked-frame replay")
    return DQNAgent(
        policy=policy, actor=qactor, loss=loss, exploration=exploration,
        optimizers={"q": make_optimizer(q_net.parameters(), net_spec.optim_spec)},
        frames_per_batch=frames_per_batch(spec), max_frame=spec.env.max_frame,
        buffer=buffer, target_updater=target_updater,
        lr_scheduler_spec=net_spec.lr_scheduler_spec,
        # a recurrent Q-net acts (epsilon-greedy) from the first frame, so every stored hidden state is its own
        init_random_frames=0 if recurrent else algo_spec.training_start_step,
        q_net=q_net, replay=ReplayPhase.from_spec(spec), clip_grad_val=net_spec.clip_grad_val,
        terminated_key=learning_keys(env)[1],
        nstep=NStepTransform(algo_spec.n_step, algo_spec.gamma) if algo_spec.n_step > 1 else None,
        seq_len=net_spec.seq_len if recurrent else None,
    )
