"""TD3: Twin Delayed DDPG (Fujimoto et al. 2018).

A deterministic tanh-bounded actor explored with Gaussian noise (`zoo.exploration.ScheduledGaussianNoise`, TorchRL's
`AdditiveGaussianModule` with its sigma on the frame clock, annealed by `step(frames)`), twin critics whose target
takes the minimum of both target critics at a smoothed target action (clipped Gaussian noise added to the target
actor's action), actor and target networks updated every `policy_delay` critic steps.

The loss is zoo's subclass of TorchRL's `TD3Loss` (`FastTD3Loss`, below): TorchRL's parameters, targets and keys,
with the forward in plain torch. Noise scales are fractions of each action dimension's half-range (as in the paper,
whose actions span [-1, 1]), given to `TD3Loss` as per-dimension tensors.
"""

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from torch import nn
from torch.func import functional_call
from torchrl.envs import EnvBase, ExplorationType, exploration_type
from torchrl.modules import ValueOperator
from torchrl.objectives import SoftUpdate, TD3Loss, ValueEstimators

from zoo.agent import Agent, loss_function, make_optimizer, regression, weighted_mean
from zoo.algos.off_policy import (
    StateActionMLP,
    check_net,
    count_step,
    loss_output,
    maybe_compile,
    optimize,
    polyak_lists,
    soft_update,
    stacked_layers,
    state_action_ensemble,
    trained_params,
    transition_tensors,
)
from zoo.envs import env_info
from zoo.exploration import ScheduledGaussianNoise
from zoo.memory import ReplayPhase, frames_per_batch, make_replay_buffer, store_transitions
from zoo.nets import ACTIVATIONS, build_mlp
from zoo.schedules import Schedule
from zoo.spec import AlgorithmSpec, ScheduleSpec, Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("TD3",)


@register_algorithm_spec(*NAMES, memories=("Replay", "PrioritizedReplay"), nets=("MLPNet",), split_optims=True,
                         compile=True, targets=("polyak",), layer_norm=False)
@dataclass
class TD3AlgorithmSpec(AlgorithmSpec):
    """Hyperparameters of TD3."""

    training_frequency: int = spec_field(1, "frames collected between training phases (a multiple of num_envs)",
                                         low=1)
    training_iter: int = spec_field(1, "gradient steps per training phase", low=1)
    training_start_step: int = spec_field(1000, "frames of uniform random actions before learning starts", low=0)
    policy_delay: int = spec_field(2, "critic steps per actor and target-network step", low=1)
    explore_var_spec: ScheduleSpec = spec_field(
        ScheduleSpec(start_val=0.1), "exploration noise std on the frame clock, as a fraction of the action half-range")
    target_noise: float = spec_field(0.2, "target policy smoothing noise std (fraction of the half-range)", low=0.0)
    target_noise_clip: float = spec_field(0.5, "clip of the smoothing noise (fraction of the half-range)", low=0.0)


# ---------------------------------------------------------------------------------------------- networks
class TanhActor(nn.Module):
    """a = mid + half * tanh(MLP(s)): a deterministic action inside the bounds."""

    def __init__(self, mlp: nn.Module, low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        self.mlp = mlp
        self.register_buffer("action_mid", (high + low) / 2)
        self.register_buffer("action_half", (high - low) / 2)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.action_mid + self.action_half * torch.tanh(self.mlp(observation))


class TD3Policy(TensorDictModuleBase):
    """The collector's policy: `TensorDictSequential(actor, noise)` in one plain-torch pass.

    The same draw as TorchRL's `AdditiveGaussianModule` (`torch.normal(mean, std) * sigma` added to the actor's
    action, clamped into the bounds, one independent draw per env and dimension, on the noise module's own
    schedule), writing `action` as a plain tensor; outside `ExplorationType.RANDOM` it is the deterministic
    actor. Why: with one env, off-policy collection pays the sequence's TensorDict plumbing every frame (see
    `zoo.algos.actor_critic.PlainPolicy`). Parameters and buffers are the two modules' under the sequence's own
    names (`module.0`, `module.1`), so its state dict is the sequence's.
    """

    def __init__(self, actor: TensorDictModule, noise: ScheduledGaussianNoise, actor_net: TanhActor):
        super().__init__()
        self.module = nn.ModuleList([actor, noise])
        self.nets = (actor_net,)  # the actor's own network, held unregistered (not counted twice)
        self.in_keys, self.out_keys = ["observation"], ["action"]
        self.register_buffer("low", actor_net.action_mid - actor_net.action_half, persistent=False)
        self.register_buffer("high", actor_net.action_mid + actor_net.action_half, persistent=False)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        actor, noise = self.module
        if exploration_type() not in (ExplorationType.RANDOM, None):
            return actor(tensordict)
        action = self.nets[0](tensordict.get("observation"))
        draw = torch.normal(mean=noise.mean.expand(action.shape), std=noise.std.expand(action.shape))
        tensordict.set("action", torch.clamp(action + draw * noise.sigma, self.low, self.high))
        return tensordict


# -------------------------------------------------------------------------------------------------- loss
class FastTD3Loss(TD3Loss):
    """TorchRL's `TD3Loss` with its forward in plain torch.

    Same inputs, outputs and settings as `TD3Loss` (TensorDict in; `loss_actor`, `loss_qvalue` out; |TD error|
    written into the input under the `priority` key, `td_error`; `set_keys`, `make_value_estimator` for gamma,
    `SoftUpdate` on its target actor and critics) and the same maths (tests/unit/test_td3.py keeps
    `TD3Loss.forward` as the oracle): target policy smoothing, N(0, policy_noise^2) clipped at `noise_clip`,
    drawn first and added to the target actor's action, then clipped to the action bounds; the target is the min
    of the twin target critics there; the actor loss is -Q_1(s, pi(s)) through the first critic (paper).
    Differences: importance weights enter as mean(w * loss), as in all of zoo's losses (zoo/algos/off_policy.py;
    TorchRL divides by sum(w)); priorities are max_i |Q_i - target| rather than TorchRL's squared error.
    `critic_loss(td)` is the critic term alone, for the steps between delayed actor updates.

    Why not `TD3Loss.forward`: per call it clones the input, builds TensorDicts for every network input and
    output and runs the twin critics through vmap over functional parameter TensorDicts, three times; on CPU that
    plumbing costs about as much as the maths. Here the same parameters are read as tensors (twin critics as
    batched matmuls over TorchRL's stacked parameters, the target actor by `functional_call`). The tensor maths is
    one method, `losses`, which `meta.compile` compiles.
    """

    def __init__(self, actor: TensorDictModule, qvalue: TensorDictModule, *, actor_net: nn.Module,
                 activation: nn.Module, policy_noise: torch.Tensor, noise_clip: torch.Tensor, compile: bool = False,
                 **kwargs):
        super().__init__(actor, qvalue, policy_noise=policy_noise, noise_clip=noise_clip, **kwargs)
        del self.policy_noise, self.noise_clip  # per action dimension: buffers, so they follow the loss's device
        self.register_buffer("policy_noise", policy_noise, persistent=False)
        self.register_buffer("noise_clip", noise_clip, persistent=False)
        targets = self._modules  # target_*_params (getattr warns: no SoftUpdate yet)
        # plain attributes, not submodules: the actor's module is registered once, inside `actor_network`
        self.__dict__.update(actor_net=actor_net, activation=activation,
                             q_layers=stacked_layers(self.qvalue_network_params),
                             target_q_layers=stacked_layers(targets["target_qvalue_network_params"]),
                             target_actor={k.removeprefix("module."): v for k, v in
                                           targets["target_actor_network_params"].flatten_keys(".").items()})
        self.__dict__["compiled_losses"] = maybe_compile(self.losses, compile)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        critic, actor, td_error = self.compiled_losses(*transition_tensors(self, tensordict), True)
        tensordict.set(self.tensor_keys.priority, td_error)
        return loss_output(loss_actor=actor, loss_qvalue=critic)

    def critic_loss(self, tensordict: TensorDictBase) -> TensorDict:
        """`loss_qvalue` alone (no actor pass); writes `td_error` as `forward` does."""
        critic, _, td_error = self.compiled_losses(*transition_tensors(self, tensordict), False)
        tensordict.set(self.tensor_keys.priority, td_error)
        return loss_output(loss_qvalue=critic)

    def losses(self, obs, action, reward, not_terminal, next_obs, weight, update_actor: bool):
        """(critic loss, actor loss or None without `update_actor`, |TD error|)."""
        noise = (torch.randn_like(action) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
        with torch.no_grad():
            next_action = (functional_call(self.actor_net, self.target_actor, (next_obs,)) + noise).clamp(
                self.min_action, self.max_action)
            next_value = state_action_ensemble(self.target_q_layers, next_obs, next_action, self.activation)
            target = reward + self.value_estimator.gamma * not_terminal * next_value.min(0).values
        q = state_action_ensemble(self.q_layers, obs, action, self.activation)
        critic_loss = weighted_mean(regression(q, target.expand_as(q), self.loss_function == "smooth_l1").sum(0),
                                    weight)
        td_error = (q - target).detach().abs().max(0).values
        if not update_actor:
            return critic_loss, None, td_error
        q1 = state_action_ensemble(self.q_layers, obs, self.actor_net(obs), self.activation, detach=True)[0]
        return critic_loss, weighted_mean(-q1, weight), td_error


# ------------------------------------------------------------------------------------------------ update
@dataclass(kw_only=True)
class TD3Agent(Agent):
    """Stores each batch and anneals the exploration noise, then `training_iter` replayed gradient steps."""

    replay: ReplayPhase
    clip_grad_val: float | None = None

    def __post_init__(self):
        self.params = trained_params(self.loss)
        self.polyak = polyak_lists(self.loss)

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        store_transitions(self.buffer, data)
        self.exploration.step(data.numel())
        return {"explore_var": self.exploration.scheduled_value.clone(),
                **self.replay.run(self.buffer, frame, self.gradient_step, self.set_lr)}

    def gradient_step(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Critics every step; actor and polyak targets every `policy_delay`-th (paper, Algorithm 1)."""
        update_actor = count_step(self, self.replay.policy_delay)
        out = self.loss(batch) if update_actor else self.loss.critic_loss(batch)
        metrics = optimize(out, self.optimizers, self.params, self.clip_grad_val)
        if update_actor:
            soft_update(self.polyak, 1 - self.target_updater.eps)
        return metrics, batch["td_error"]


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble TD3: tanh actor with scheduled Gaussian exploration, twin critics in the loss, polyak targets."""
    check_net(spec)
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    info = env_info(env)
    if info["discrete"]:
        raise SpecError("agent.algorithm.name", f"TD3 needs continuous actions; {spec.env.name} is discrete "
                        "(use SoftActorCritic or DQN)")
    action_spec, obs_dim = info["action_spec"], math.prod(info["obs_shape"])
    low, high = action_spec.space.low, action_spec.space.high
    actor_net = TanhActor(build_mlp(obs_dim, info["action_dim"], net_spec), low, high)
    actor = TensorDictModule(actor_net, ["observation"], ["action"])
    half = actor_net.action_half
    noise = ScheduledGaussianNoise(action_spec, Schedule(algo_spec.explore_var_spec), std=float(half.mean()))
    qnet = ValueOperator(StateActionMLP(build_mlp(obs_dim + info["action_dim"], 1, net_spec)),
                         in_keys=["observation", "action"])
    loss = FastTD3Loss(actor, qnet, action_spec=action_spec, num_qvalue_nets=2, loss_function=loss_function(net_spec),
                       policy_noise=algo_spec.target_noise * half, noise_clip=algo_spec.target_noise_clip * half,
                       actor_net=actor_net, activation=ACTIVATIONS[net_spec.hid_layers_activation](),
                       compile=spec.meta.compile)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=algo_spec.gamma)
    optimizers = {"actor": make_optimizer(actor_net.parameters(), net_spec.actor_optim_spec or net_spec.optim_spec),
                  "critic": make_optimizer(loss.qvalue_network_params.values(True, True),
                                           net_spec.critic_optim_spec or net_spec.optim_spec)}
    return TD3Agent(
        policy=TD3Policy(actor, noise, actor_net), actor=actor, loss=loss, exploration=noise, optimizers=optimizers,
        frames_per_batch=frames_per_batch(spec), max_frame=spec.env.max_frame,
        buffer=make_replay_buffer(spec.agent.memory), target_updater=SoftUpdate(loss, tau=net_spec.polyak_coef),
        lr_scheduler_spec=net_spec.lr_scheduler_spec, init_random_frames=algo_spec.training_start_step,
        replay=ReplayPhase.from_spec(spec), clip_grad_val=net_spec.clip_grad_val,
    )
