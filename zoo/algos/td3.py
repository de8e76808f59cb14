"""TD3: Twin Delayed DDPG (Fujimoto et al. 2018).

A deterministic tanh-bounded actor explored with Gaussian noise (TorchRL `AdditiveGaussianModule`, its
sigma on the frame clock), twin critics whose target takes the minimum of both target critics at a
smoothed target action (clipped Gaussian noise added to the target actor's action), actor and target
networks updated every `policy_delay` critic steps.

TorchRL's `TD3Loss` holds the parameters (actor, twin critics stacked on a leading dim of 2, and polyak
targets of both maintained by `SoftUpdate`); the update reads them in plain torch for the same reason as
SAC's (zoo/algos/sac.py, zoo/algos/off_policy.py; tests/unit/test_td3.py checks both give the same losses).
Differences from `TD3Loss`: noise scales are fractions of each action dimension's half-range (as in the paper,
whose actions span [-1, 1]); priorities are max_i |Q_i - target| rather than the squared error.
"""

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torch.func import functional_call
from torchrl.envs import EnvBase
from torchrl.modules import AdditiveGaussianModule, ValueOperator
from torchrl.objectives import SoftUpdate, TD3Loss, ValueEstimators

from zoo.agent import Agent, make_optimizer
from zoo.algos.off_policy import (
    OffPolicyAgent,
    StateActionMLP,
    check_net,
    ensemble_mlp,
    frames_per_batch,
    maybe_compile,
    priority_beta,
    regression,
    stacked_layers,
    weighted_mean,
)
from zoo.envs import env_info
from zoo.memory import make_replay_buffer
from zoo.nets import ACTIVATIONS, build_mlp
from zoo.schedules import Schedule
from zoo.spec import AlgorithmSpec, ScheduleSpec, Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("TD3",)


@register_algorithm_spec(*NAMES, memories=("Replay", "PrioritizedReplay"), nets=("MLPNet",), split_optims=True,
                         compile=True, targets=("polyak",))
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


class TanhActor(nn.Module):
    """a = mid + half * tanh(MLP(s)): a deterministic action inside the bounds."""

    def __init__(self, mlp: nn.Module, low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        self.mlp = mlp
        self.register_buffer("action_mid", (high + low) / 2)
        self.register_buffer("action_half", (high - low) / 2)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.action_mid + self.action_half * torch.tanh(self.mlp(observation))


@dataclass(kw_only=True)
class TD3Agent(OffPolicyAgent):
    """TD3 gradient step in plain torch over the parameters held by TorchRL's `TD3Loss`."""

    actor_net: TanhActor
    activation: nn.Module
    noise: AdditiveGaussianModule

    def __post_init__(self):
        super().__post_init__()
        self.q_layers = stacked_layers(self.loss.qvalue_network_params)
        self.target_q_layers = stacked_layers(self.loss.target_qvalue_network_params)
        self.target_actor = {k.removeprefix("module."): v for k, v in
                             self.loss.target_actor_network_params.flatten_keys(".").items()}
        self.actor_params = list(self.actor_net.parameters())
        self.q_params = [p for layer in self.q_layers for p in layer]
        mid, half = self.actor_net.action_mid, self.actor_net.action_half
        self.low, self.high = mid - half, mid + half
        self.losses = maybe_compile(self.compute_losses, self.compile)

    def explore(self, frame: int) -> dict[str, torch.Tensor]:
        sigma = self.schedules["explore_var"](frame)
        self.noise.sigma.fill_(sigma)
        return {"explore_var": torch.tensor(sigma)}

    def q_values(self, layers, obs: torch.Tensor, action: torch.Tensor, detach: bool = False) -> torch.Tensor:
        return ensemble_mlp(layers, torch.cat([obs, action], -1), self.activation, detach).squeeze(-1)

    def compute_losses(self, obs, action, reward, not_terminal, next_obs, weight, update_actor: bool):
        """(critic loss, actor loss or None, |TD error|) with TD3Loss's maths."""
        spec, half = self.algo_spec, self.actor_net.action_half
        noise = (torch.randn_like(action) * spec.target_noise * half).clamp(
            -spec.target_noise_clip * half, spec.target_noise_clip * half)
        with torch.no_grad():
            next_action = (functional_call(self.actor_net, self.target_actor, (next_obs,)) + noise).clamp(
                self.low, self.high)
            next_value = self.q_values(self.target_q_layers, next_obs, next_action).min(0).values
            target = reward + spec.gamma * not_terminal * next_value
        q = self.q_values(self.q_layers, obs, action)
        critic_loss = weighted_mean(regression(q, target.expand_as(q), self.huber).sum(0), weight)
        td_error = (q - target).detach().abs().max(0).values
        if not update_actor:
            return critic_loss, None, td_error
        q1 = self.q_values(self.q_layers, obs, self.actor_net(obs), detach=True)[0]  # the first critic (paper)
        return critic_loss, weighted_mean(-q1, weight), td_error

    def gradient_step(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        update_actor = self.count_step()
        critic_loss, actor_loss, td_error = self.losses(
            batch["observation"], batch["action"], batch["next", "reward"].squeeze(-1),
            (~batch["next", "terminated"]).squeeze(-1).float(), batch["next", "observation"],
            batch.get("priority_weight", None), update_actor)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        (critic_loss if actor_loss is None else critic_loss + actor_loss).backward()
        self.step_optimizer("critic", self.q_params)
        metrics = {"loss": critic_loss.detach()}
        if actor_loss is not None:
            self.step_optimizer("actor", self.actor_params)
            self.soft_update()  # targets move with the delayed actor updates (paper, Algorithm 1)
            metrics["loss_actor"] = actor_loss.detach()
        return metrics, td_error


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble TD3: tanh actor with Gaussian exploration, twin critics in `TD3Loss`, polyak targets."""
    check_net(spec)
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    info = env_info(env)
    if info["discrete"]:
        raise SpecError("agent.algorithm.name", f"TD3 needs continuous actions; {spec.env.name} is discrete "
                        "(use SoftActorCritic or DQN)")
    action_spec, obs_dim = info["action_spec"], math.prod(info["obs_shape"])
    low, high = action_spec.space.low, action_spec.space.high
    half = float(((high - low) / 2).mean())
    actor_net = TanhActor(build_mlp(obs_dim, info["action_dim"], net_spec), low, high)
    actor = TensorDictModule(actor_net, ["observation"], ["action"])
    noise = AdditiveGaussianModule(action_spec, sigma_init=1.0, sigma_end=1.0, std=half)  # sigma set per frame
    qnet = ValueOperator(StateActionMLP(build_mlp(obs_dim + info["action_dim"], 1, net_spec)),
                         in_keys=["observation", "action"])
    loss = TD3Loss(actor, qnet, action_spec=action_spec, num_qvalue_nets=2,
                   policy_noise=algo_spec.target_noise * half, noise_clip=algo_spec.target_noise_clip * half,
                   loss_function="smooth_l1" if net_spec.loss_spec.name == "SmoothL1Loss" else "l2")
    loss.make_value_estimator(ValueEstimators.TD0, gamma=algo_spec.gamma)
    optimizers = {"actor": make_optimizer(actor_net.parameters(), net_spec.actor_optim_spec or net_spec.optim_spec),
                  "critic": make_optimizer(loss.qvalue_network_params.values(True, True),
                                           net_spec.critic_optim_spec or net_spec.optim_spec)}
    return TD3Agent(
        policy=TensorDictSequential(actor, noise), actor=actor, loss=loss, optimizers=optimizers,
        frames_per_batch=frames_per_batch(spec), max_frame=spec.env.max_frame,
        buffer=make_replay_buffer(spec.agent.memory), batch_size=spec.agent.memory.batch_size,
        target_updater=SoftUpdate(loss, tau=net_spec.polyak_coef),
        schedules={"explore_var": Schedule(algo_spec.explore_var_spec)}, lr_scheduler_spec=net_spec.lr_scheduler_spec,
        init_random_frames=algo_spec.training_start_step, algo_spec=algo_spec, beta=priority_beta(spec),
        clip_grad_val=net_spec.clip_grad_val, huber=net_spec.loss_spec.name == "SmoothL1Loss",
        compile=spec.meta.compile, actor_net=actor_net, activation=ACTIVATIONS[net_spec.hid_layers_activation](),
        noise=noise,
    )
