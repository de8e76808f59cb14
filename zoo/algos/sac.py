"""Soft Actor-Critic (Haarnoja et al. 2018, v2 with twin Q and a tuned temperature), continuous and discrete.

Continuous actions: a tanh-squashed Gaussian (`ProbabilisticActor` + TorchRL `TanhNormal`, whose log-prob
includes the change-of-variables term log(1 - tanh(u)^2) and the affine rescale to the action bounds).
Discrete actions (Christodoulou 2019): a categorical policy with exact expectations over actions in the
target, the actor loss and the temperature loss (TorchRL `DiscreteSACLoss`). Discrete SAC also takes a
`ConvNet` (Atari): actor and twin critics are each a conv torso + MLP head (`zoo.nets.build_q_net`), and the
replay stores uint8 frames once each (`FrameStackReplay`); a lost life stops bootstrapping (`learning_keys`).

This file also holds what TD3 and CrossQ share: twin Q-networks, the replayed update loop with prioritized
replay (importance weights into every loss, priorities from the critics' |TD error|), and `updates_per_s`.
Importance weights enter as mean(w * loss) (Schaul et al. 2016, as zoo's DQN); TorchRL's losses divide by sum(w).

Speed: TorchRL's `SACLoss` holds the parameters (actor, twin Q stacked on a leading dim of 2, their polyak
targets maintained by `SoftUpdate`, `log_alpha`), but the update reads them in plain torch (twin critics as
batched matmuls, the tanh-Gaussian by hand). CPU time per gradient step (sample + losses + backward + three
Adam steps + SoftUpdate, batch 256, one thread, process time on the shared 2-core box at load 10-20):
64x64 nets 10.2 ms vs 21.4 ms with `SACLoss`; 256x256 nets 32 ms vs 45 ms (before the hand-written
tanh-Gaussian: building `TanhNormal` was ~25% of the loss time). `meta.compile` (torch.compile of the losses)
gave 9.0 ms at 64x64, 12% less, after a long warm-up, so it stays off by default.
tests/unit/test_sac.py checks that our losses and TorchRL's are the same.
"""

import math
import time
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torch.distributions import Categorical
from torch.nn import functional as F
from torchrl.envs import EnvBase
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import DiscreteSACLoss, SACLoss, SoftUpdate, ValueEstimators

from zoo.agent import Agent, clip_grad, make_optimizer
from zoo.envs import env_info, learning_keys
from zoo.memory import TRANSITION_KEYS, make_replay_buffer, replay_batches
from zoo.nets import ACTIVATIONS, build_mlp, build_q_net
from zoo.schedules import Schedule
from zoo.spec import AlgorithmSpec, ScheduleSpec, Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("SoftActorCritic",)


@register_algorithm_spec(*NAMES)
@dataclass
class SACAlgorithmSpec(AlgorithmSpec):
    """Hyperparameters of Soft Actor-Critic."""

    training_frequency: int = spec_field(1, "frames collected between training phases (a multiple of num_envs)",
                                         low=1)
    training_iter: int = spec_field(1, "gradient steps per training phase", low=1)
    training_start_step: int = spec_field(1000, "frames of uniform random actions before learning starts", low=0)
    policy_delay: int = spec_field(1, "critic steps per actor and temperature step", low=1)
    target_entropy: float | str = spec_field(
        "auto", "entropy the temperature is tuned toward; auto: -action_dim, or 0.98 log(num_actions) if discrete")
    alpha_init: float = spec_field(1.0, "initial temperature", low=0.0, low_open=True)
    fixed_alpha: bool = spec_field(False, "keep the temperature at alpha_init instead of tuning it")


# --------------------------------------------------------------------------------- shared by TD3 and CrossQ
class StateActionMLP(nn.Module):
    """Q(s, a) = MLP([s, a])."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.mlp = mlp

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([observation, action], -1))


def check_net(spec: Spec, conv: bool = False) -> None:
    """MLPNet (and ConvNet where `conv`), on a one-step replay."""
    allowed = ("MLPNet", "ConvNet") if conv else ("MLPNet",)
    if spec.agent.net.type not in allowed:
        raise SpecError("agent.net.type", f"{spec.agent.algorithm.name} supports {' or '.join(allowed)} here, "
                        f"got {spec.agent.net.type}")
    if spec.agent.memory.name not in ("Replay", "PrioritizedReplay"):
        raise SpecError("agent.memory.name", f"{spec.agent.algorithm.name} needs Replay or PrioritizedReplay, "
                        f"got {spec.agent.memory.name}")


def stacked_layers(params: TensorDictBase) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight [K, out, in], bias [K, out]) of each Linear of K stacked MLPs, in forward order."""
    flat = list(params.flatten_keys(".").values())
    return list(zip(flat[0::2], flat[1::2], strict=True))


def ensemble_mlp(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor, activation: nn.Module,
                 detach: bool = False) -> torch.Tensor:
    """K stacked MLPs on one input `[B, in]` -> `[K, B, out]`, as batched matmuls (what vmap computes)."""
    x = x.expand(layers[0][0].shape[0], *x.shape)
    for i, (weight, bias) in enumerate(layers):
        if detach:
            weight, bias = weight.detach(), bias.detach()
        x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        if i < len(layers) - 1:
            x = activation(x)
    return x


def weighted_mean(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    return x.mean() if weight is None else (x * weight).mean()


def regression(pred: torch.Tensor, target: torch.Tensor, huber: bool) -> torch.Tensor:
    """Elementwise l2 or smooth-l1 distance (TorchRL `distance_loss`)."""
    return F.smooth_l1_loss(pred, target, reduction="none") if huber else (pred - target).pow(2)


def priority_beta(spec: Spec) -> Schedule | None:
    """Importance-sampling exponent annealed to 1 over the run (Schaul et al. 2016), for prioritized replay."""
    mem_spec = spec.agent.memory
    if mem_spec.name != "PrioritizedReplay":
        return None
    return Schedule(ScheduleSpec(name="linear_decay", start_val=mem_spec.beta, end_val=1.0,
                                 end_step=spec.env.max_frame))


def frames_per_batch(spec: Spec) -> int:
    n = spec.env.num_envs
    return max(n, -(-spec.agent.algorithm.training_frequency // n) * n)


@dataclass(kw_only=True)
class OffPolicyAgent(Agent):
    """Stores each batch, then runs `training_iter` replayed gradient steps; subclasses write `gradient_step`."""

    algo_spec: AlgorithmSpec
    batch_size: int  # replayed transitions per gradient step
    beta: Schedule | None = None  # importance-sampling exponent, when replay is prioritized
    clip_grad_val: float | None = None
    huber: bool = False
    compile: bool = False  # torch.compile the loss computation (meta.compile)
    terminated_key: str = "terminated"  # ("next", key) that stops bootstrapping (Atari: also a lost life)

    def gradient_step(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One gradient step on a replayed batch; returns metrics and per-sample |TD error| (priorities)."""
        raise NotImplementedError

    def explore(self, frame: int) -> dict[str, torch.Tensor]:
        """Set exploration for `frame` (frame clock); returns its metrics."""
        return {}

    def __post_init__(self):
        self.polyak_lists = polyak_lists(self.loss)  # (targets, sources), for soft_update

    def soft_update(self) -> None:
        """`SoftUpdate.step`'s polyak averaging as one `_foreach_lerp_` over cached tensor lists: the TensorDict
        walk of `SoftUpdate.step` cost 1.38 ms per call against 0.065 ms (SAC Pendulum 64x64 twin critics)."""
        with torch.no_grad():
            torch._foreach_lerp_(*self.polyak_lists, 1 - self.target_updater.eps)

    def step_optimizer(self, name: str, params: list[torch.Tensor]) -> None:
        clip_grad(params, self.clip_grad_val)
        self.optimizers[name].step()

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        transitions = data.select(*TRANSITION_KEYS)
        if self.terminated_key != "terminated":  # learn as if each lost life ended the episode
            transitions["next", "terminated"] = data["next", self.terminated_key]
        self.buffer.extend(transitions.reshape(-1))
        metrics = self.explore(frame)
        if frame < self.algo_spec.training_start_step:
            return metrics
        lr = self.set_lr(frame)
        iters = self.algo_spec.training_iter
        start = time.perf_counter()
        if self.beta is not None:
            self.buffer.sampler.beta = self.beta(frame)
        steps = []
        for batch in replay_batches(self.buffer, self.batch_size, iters):
            step_metrics, td_error = self.gradient_step(batch)
            if self.beta is not None:
                self.buffer.update_priority(batch["index"], td_error)
            steps.append(step_metrics)
        self.num_updates += iters
        for key in dict.fromkeys(k for step in steps for k in step):  # actor metrics: every policy_delay steps
            metrics[key] = torch.stack([s[key] for s in steps if key in s]).mean()
        metrics.update(lr_factor=torch.tensor(lr), updates_per_s=torch.tensor(iters / (time.perf_counter() - start)))
        return metrics


def polyak_lists(loss: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(targets, sources): every `target_<net>_params` leaf of a TorchRL loss and its online counterpart."""
    targets, sources = [], []
    for name in ("actor_network", "qvalue_network"):
        target = getattr(loss, f"target_{name}_params", None)
        if target is None:
            continue
        source = getattr(loss, f"{name}_params")
        for key in target.keys(True, True):
            if target[key].data_ptr() != source[key].data_ptr():  # SAC's target actor is the actor (no copy)
                targets.append(target[key])
                sources.append(source[key])
    return targets, sources


def maybe_compile(fn, enabled: bool):
    """`torch.compile` the loss computation when `meta.compile` (optimizer steps stay eager, fused Adam)."""
    return torch.compile(fn, dynamic=False) if enabled else fn


def conv_ensemble(module: nn.Module, params: TensorDictBase, x: torch.Tensor, detach: bool = False) -> torch.Tensor:
    """K conv nets on one input -> `[K, B, out]`: each slice of TorchRL's stacked parameters `[K, ...]` swapped
    into `module` in turn (~1 ms for a pair, against ~200 ms forward + backward of twin Nature CNNs, batch 32)."""
    outs = []
    for net_params in params.unbind(0):
        with (net_params.detach() if detach else net_params).to_module(module):
            outs.append(module(x))
    return torch.stack(outs)


# --------------------------------------------------------------------------------------------------- SAC
@dataclass(kw_only=True)
class SACAgent(OffPolicyAgent):
    """SAC gradient step in plain torch over the parameters held by TorchRL's `SACLoss` / `DiscreteSACLoss`."""

    actor_net: nn.Module  # observation -> (loc, scale) or logits
    discrete: bool
    activation: nn.Module
    action_low: torch.Tensor | None = None
    action_high: torch.Tensor | None = None
    conv: bool = False  # conv critics: `q_layers` are TorchRL's stacked parameters, run by `conv_ensemble`

    def __post_init__(self):
        super().__post_init__()
        params, target_params = self.loss.qvalue_network_params, self.loss.target_qvalue_network_params
        self.q_layers = params if self.conv else stacked_layers(params)
        self.target_q_layers = target_params if self.conv else stacked_layers(target_params)
        self.actor_params = list(self.actor_net.parameters())
        self.q_params = list(params.values(True, True))
        self.losses = maybe_compile(self.compute_losses, self.compile)
        self.critic_steps = 0

    def q_values(self, layers, obs: torch.Tensor, action: torch.Tensor | None, detach: bool = False) -> torch.Tensor:
        """Twin Q: `[2, B]` for continuous (s, a); `[2, B, num_actions]` for discrete s."""
        if self.conv:
            return conv_ensemble(self.loss.qvalue_network.module, layers["module"], obs, detach)
        if self.discrete:
            return ensemble_mlp(layers, obs, self.activation, detach)
        return ensemble_mlp(layers, torch.cat([obs, action], -1), self.activation, detach).squeeze(-1)

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous: a reparameterized action and its log-prob. Discrete: probabilities and log-probabilities."""
        if self.discrete:
            log_probs = torch.log_softmax(self.actor_net(obs), -1)
            return log_probs.exp(), log_probs
        # TorchRL's TanhNormal, by hand: constructing the distribution cost ~25% of this update (cProfile)
        loc, scale = self.actor_net(obs)
        u = loc + scale * torch.randn_like(loc)
        mid, half = (self.action_high + self.action_low) / 2, (self.action_high - self.action_low) / 2
        normal_log_prob = -((u - loc) / scale).pow(2) / 2 - scale.log() - math.log(math.sqrt(2 * math.pi))
        # change of variables a = mid + half * tanh(u): log|da/du| = log(half) + 2 (log 2 - u - softplus(-2u))
        log_det = half.log() + 2 * (math.log(2) - u - F.softplus(-2 * u))
        return mid + half * torch.tanh(u), (normal_log_prob - log_det).sum(-1)

    def compute_losses(self, obs, action, reward, not_terminal, next_obs, weight, update_actor: bool):
        """(critic loss, actor loss, alpha loss, |TD error|, entropy) with SACLoss's maths (v2, twin-min target)."""
        alpha = self.loss.log_alpha.detach().exp()
        with torch.no_grad():
            if self.discrete:  # exact expectation over the categorical policy
                next_q = self.q_values(self.target_q_layers, next_obs, None).min(0).values
                next_probs, next_log_probs = self.act(next_obs)
                next_value = (next_probs * (next_q - alpha * next_log_probs)).sum(-1)
            else:
                next_action, next_log_prob = self.act(next_obs)
                next_value = self.q_values(self.target_q_layers, next_obs, next_action).min(0).values \
                    - alpha * next_log_prob
            target = reward + self.algo_spec.gamma * not_terminal * next_value
        q = self.q_values(self.q_layers, obs, action)
        if self.discrete:
            q = q.gather(-1, action.expand(2, -1).unsqueeze(-1)).squeeze(-1)
        critic_loss = weighted_mean(regression(q, target.expand_as(q), self.huber).sum(0), weight)
        td_error = (q - target).detach().abs().max(0).values
        if not update_actor:
            return critic_loss, None, None, td_error, None
        if self.discrete:
            probs, log_probs = self.act(obs)
            min_q = self.q_values(self.q_layers, obs, None, detach=True).min(0).values
            actor_loss = weighted_mean((probs * (alpha * log_probs - min_q)).sum(-1), weight)
            log_prob = (probs * log_probs).sum(-1).detach()
        else:
            new_action, log_prob = self.act(obs)
            min_q = self.q_values(self.q_layers, obs, new_action, detach=True).min(0).values
            actor_loss = weighted_mean(alpha * log_prob - min_q, weight)
            log_prob = log_prob.detach()
        alpha_loss = weighted_mean(-self.loss.log_alpha * (log_prob + self.loss.target_entropy), weight)
        return critic_loss, actor_loss, alpha_loss, td_error, -log_prob.mean()

    def gradient_step(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        update_actor = self.critic_steps % self.algo_spec.policy_delay == 0
        self.critic_steps += 1
        critic_loss, actor_loss, alpha_loss, td_error, entropy = self.losses(
            batch["observation"], batch["action"], batch["next", "reward"].squeeze(-1),
            (~batch["next", "terminated"]).squeeze(-1).float(), batch["next", "observation"],
            batch.get("priority_weight", None), update_actor)
        total = critic_loss if actor_loss is None else critic_loss + actor_loss + alpha_loss
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        total.backward()
        self.step_optimizer("critic", self.q_params)
        metrics = {"loss": critic_loss.detach()}
        if actor_loss is not None:
            self.step_optimizer("actor", self.actor_params)
            if "alpha" in self.optimizers:
                self.optimizers["alpha"].step()
            metrics.update(loss_actor=actor_loss.detach(), entropy=entropy, alpha=self.loss.log_alpha.detach().exp())
        self.soft_update()
        return metrics, td_error


def target_entropy(algo_spec: SACAlgorithmSpec, info: dict) -> float:
    if isinstance(algo_spec.target_entropy, str):
        if algo_spec.target_entropy != "auto":
            raise SpecError("agent.algorithm.target_entropy",
                            f"'{algo_spec.target_entropy}' is not allowed; a number or 'auto'")
        return 0.98 * math.log(info["num_actions"]) if info["discrete"] else -float(info["action_dim"])
    return float(algo_spec.target_entropy)


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble the SAC agent: actor, twin critics in the TorchRL loss, polyak targets, three Adams."""
    info = env_info(env)
    check_net(spec, conv=info["discrete"])
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    conv = net_spec.type == "ConvNet"
    obs_dim, activation = math.prod(info["obs_shape"]), ACTIVATIONS[net_spec.hid_layers_activation]()
    entropy = target_entropy(algo_spec, info)
    common = dict(loss_function="smooth_l1" if net_spec.loss_spec.name == "SmoothL1Loss" else "l2",
                  alpha_init=algo_spec.alpha_init, fixed_alpha=algo_spec.fixed_alpha, target_entropy=entropy)
    low = high = None
    if info["discrete"]:
        n = info["num_actions"]
        def make_net() -> nn.Module:  # observation -> one output per action (logits, or Q-values)
            return build_q_net(info["obs_shape"], n, net_spec) if conv else build_mlp(obs_dim, n, net_spec)

        actor_net = make_net()
        actor = ProbabilisticActor(TensorDictModule(actor_net, ["observation"], ["logits"]), in_keys=["logits"],
                                   distribution_class=Categorical, spec=info["action_spec"], return_log_prob=True)
        qnet = ValueOperator(make_net(), in_keys=["observation"], out_keys=["action_value"])
        loss = DiscreteSACLoss(actor, qnet, num_actions=n, action_space="categorical", **common)
    else:
        spec_ = info["action_spec"]
        low, high = spec_.space.low, spec_.space.high
        actor_net = nn.Sequential(build_mlp(obs_dim, 2 * info["action_dim"], net_spec), NormalParamExtractor())
        actor = ProbabilisticActor(TensorDictModule(actor_net, ["observation"], ["loc", "scale"]),
                                   in_keys=["loc", "scale"], distribution_class=TanhNormal,
                                   distribution_kwargs={"low": low, "high": high}, spec=spec_, return_log_prob=True)
        qnet = ValueOperator(StateActionMLP(build_mlp(obs_dim + info["action_dim"], 1, net_spec)),
                             in_keys=["observation", "action"])
        loss = SACLoss(actor, qnet, num_qvalue_nets=2, action_spec=spec_, **common)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=algo_spec.gamma)
    actor_optim = net_spec.actor_optim_spec or net_spec.optim_spec
    optimizers = {
        "actor": make_optimizer(actor_net.parameters(), actor_optim),
        "critic": make_optimizer(loss.qvalue_network_params.values(True, True),
                                 net_spec.critic_optim_spec or net_spec.optim_spec),
    }
    if not algo_spec.fixed_alpha:
        optimizers["alpha"] = make_optimizer([loss.log_alpha], actor_optim)
    return SACAgent(
        policy=actor, actor=actor, loss=loss, optimizers=optimizers, frames_per_batch=frames_per_batch(spec),
        max_frame=spec.env.max_frame, buffer=make_replay_buffer(spec.agent.memory, env=env),  # frames: once each
        batch_size=spec.agent.memory.batch_size,
        target_updater=SoftUpdate(loss, tau=net_spec.polyak_coef), lr_scheduler_spec=net_spec.lr_scheduler_spec,
        init_random_frames=algo_spec.training_start_step, algo_spec=algo_spec, beta=priority_beta(spec),
        clip_grad_val=net_spec.clip_grad_val, huber=net_spec.loss_spec.name == "SmoothL1Loss",
        compile=spec.meta.compile, terminated_key=learning_keys(env)[1], conv=conv,
        actor_net=actor_net, discrete=info["discrete"], activation=activation, action_low=low, action_high=high,
    )
