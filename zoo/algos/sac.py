"""Soft Actor-Critic (Haarnoja et al. 2018, v2 with twin Q and a tuned temperature), continuous and discrete.

Continuous actions: a tanh-squashed Gaussian (`ProbabilisticActor` + TorchRL `TanhNormal`, whose log-prob
includes the change-of-variables term log(1 - tanh(u)^2) and the affine rescale to the action bounds).
Discrete actions (Christodoulou 2019): a categorical policy with exact expectations over actions in the
target, the actor loss and the temperature loss (TorchRL `DiscreteSACLoss`). Discrete SAC also takes a
`ConvNet` (Atari): actor and twin critics are each a conv torso + MLP head (`zoo.nets.build_q_net`), and the
replay stores uint8 frames once each (`FrameStackReplay`); a lost life stops bootstrapping (`learning_keys`).

The replayed update loop (prioritized replay, importance weights), twin Q-networks and polyak averaging that
SAC shares with TD3 and CrossQ live in zoo/algos/off_policy.py.

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

from zoo.agent import Agent, make_optimizer
from zoo.algos.off_policy import (
    OffPolicyAgent,
    StateActionMLP,
    check_net,
    conv_ensemble,
    ensemble_mlp,
    frames_per_batch,
    maybe_compile,
    priority_beta,
    regression,
    stacked_layers,
    target_entropy,
    weighted_mean,
)
from zoo.envs import env_info, learning_keys
from zoo.memory import make_replay_buffer
from zoo.nets import ACTIVATIONS, build_mlp, build_q_net
from zoo.spec import AlgorithmSpec, Spec, register_algorithm_spec, spec_field

NAMES = ("SoftActorCritic",)


@register_algorithm_spec(*NAMES, memories=("Replay", "PrioritizedReplay"), nets=("MLPNet", "ConvNet"),
                         split_optims=True, compile=True, targets=("polyak",))
@dataclass
class SACAlgorithmSpec(AlgorithmSpec):
    """Hyperparameters of Soft Actor-Critic."""

    training_frequency: int = spec_field(1, "frames collected between training phases (a multiple of num_envs)",
                                         low=1)
    training_iter: int = spec_field(1, "gradient steps per training phase", low=1)
    training_start_step: int = spec_field(1000, "frames of uniform random actions before learning starts", low=0)
    policy_delay: int = spec_field(1, "critic steps per actor and temperature step", low=1)
    target_entropy: float | str = spec_field(
        "auto", "entropy the temperature is tuned toward; auto: -action_dim, or 0.98 log(num_actions) if discrete "
        "(the paper's; with few actions it keeps the policy near uniform: use ~0.2 log(num_actions))")
    alpha_init: float = spec_field(1.0, "initial temperature", low=0.0, low_open=True)
    fixed_alpha: bool = spec_field(False, "keep the temperature at alpha_init instead of tuning it")


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
        update_actor = self.count_step()
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
