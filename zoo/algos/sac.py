"""Soft Actor-Critic (Haarnoja et al. 2018, v2 with twin Q and a tuned temperature), continuous and discrete.

Continuous actions: a tanh-squashed Gaussian (`ProbabilisticActor` + TorchRL `TanhNormal`, whose log-prob
includes the change-of-variables term log(1 - tanh(u)^2) and the affine rescale to the action bounds).
Discrete actions (Christodoulou 2019): a categorical policy with exact expectations over actions in the
target, the actor loss and the temperature loss (TorchRL `DiscreteSACLoss`). Discrete SAC also takes a
`ConvNet` (Atari): actor and twin critics are each a conv torso + MLP head (`zoo.nets.build_q_net`), and the
replay stores uint8 frames once each (`FrameStackReplay`); a lost life stops bootstrapping (`learning_keys`).
`agent.net.layer_norm` puts a LayerNorm after each hidden Linear of actor and critics.

The loss is zoo's subclass of TorchRL's `SACLoss` / `DiscreteSACLoss` (`FastSACLoss`, `FastDiscreteSACLoss`,
below): TorchRL's parameters, targets, temperature and keys, with the forward in plain torch. The agent's update
stores each batch, then runs replayed gradient steps (zoo/algos/off_policy.py, zoo/memory.py), the actor and
temperature every `policy_delay` critic steps, the polyak targets after every step. `twin_q: mean` averages the twin
critics in the target and the actor loss where v2 takes their min (SLM-Lab's discrete SAC): on Acrobot the min's
pessimism about rarely visited states kept the policy from the swings that reach the goal.
"""

import dataclasses
import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torch.distributions import Categorical
from torch.nn import functional as F
from torchrl.envs import EnvBase
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import DiscreteSACLoss, SACLoss, SoftUpdate, ValueEstimators

from zoo.agent import Agent, loss_function, make_optimizer, regression, weighted_mean
from zoo.algos.actor_critic import PlainNets, PlainPolicy
from zoo.algos.off_policy import (
    StateActionMLP,
    check_net,
    conv_ensemble,
    count_step,
    ensemble_mlp,
    loss_output,
    maybe_compile,
    optimize,
    polyak_lists,
    soft_update,
    spectral_normalized,
    stacked_layers,
    state_action_ensemble,
    target_entropy,
    trained_params,
    transition_tensors,
)
from zoo.envs import env_info, learning_keys
from zoo.memory import ReplayPhase, frames_per_batch, make_replay_buffer, store_transitions
from zoo.nets import ACTIVATIONS, build_mlp, build_q_net, tanh_normal_log_prob
from zoo.spec import AlgorithmSpec, Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("SoftActorCritic",)


@dataclass
class EntropyAnnealSpec:
    """Discrete SAC's target entropy as a share of its maximum, log(num_actions), annealed linearly on the frame
    clock (SLM-Lab's `entropy_anneal`)."""

    start_ratio: float = spec_field(0.6, "share of log(num_actions) at frame 0", low=0.0, high=1.0)
    end_ratio: float | None = spec_field(None, "share at `frames` and after (default: start_ratio)", low=0.0,
                                         high=1.0)
    frames: int = spec_field(0, "frames over which start_ratio anneals to end_ratio (0: constant)", low=0)

    def ratio(self, frame: int) -> float:
        end = self.start_ratio if self.end_ratio is None else self.end_ratio
        progress = min(frame / self.frames, 1.0) if self.frames else 0.0
        return self.start_ratio + progress * (end - self.start_ratio)


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
    alpha_lr: float | None = spec_field(None, "learning rate of the temperature's optimizer (None: the actor's)",
                                        low=0.0, low_open=True)
    log_alpha_min: float | None = spec_field(None, "clamp log(temperature) from below after each temperature step "
                                             "(SLM-Lab uses -5; None: no clamp)")
    log_alpha_max: float | None = spec_field(None, "clamp log(temperature) from above after each temperature step "
                                             "(SLM-Lab uses 2; None: no clamp)")
    alpha_anneal_frames: int = spec_field(0, "with fixed_alpha: anneal the temperature linearly from alpha_init to "
                                          "0 over this many frames (0: constant)", low=0)
    spectral_norm: bool = spec_field(False, "spectral normalization of the critics' penultimate layer, targets "
                                     "included (Gogianu et al. 2021; MLP critics)")
    twin_q: str = spec_field("min", "how the twin critics combine in the target and the actor loss: min (Fujimoto et "
                             "al. 2018, SAC v2), or mean (SLM-Lab's discrete SAC: no underestimation to steer the "
                             "policy away from rarely visited states)", choices=("min", "mean"))
    entropy_anneal: EntropyAnnealSpec | None = spec_field(None, "discrete actions, target_entropy: auto: the target "
                                                          "as an annealed share of log(num_actions) (None: 0.98)")


# -------------------------------------------------------------------------------------------------- loss
class FastSACMaths:
    """The forward of zoo's SAC losses (mixed into TorchRL's `SACLoss` and `DiscreteSACLoss`, below).

    Same inputs, outputs and settings as TorchRL's (TensorDict in; `loss_actor`, `loss_qvalue`, `loss_alpha`,
    `alpha`, `entropy` out; |TD error| max over the twin critics written into the input under the `priority` key,
    `td_error`; `set_keys`, `make_value_estimator` for gamma, `SoftUpdate` on its target parameters) and the same
    maths (v2: twin-min TD(0) target without a value net; tests/unit/test_sac.py keeps `SACLoss.forward` and
    `DiscreteSACLoss.forward` as the oracles), but for importance weights, which enter as mean(w * loss) as in all
    of zoo's losses (zoo/algos/off_policy.py; TorchRL divides by sum(w)). `critic_loss(td)` is the critic term
    alone, for the steps that update only the critics (`policy_delay`).

    Why not TorchRL's forward: per call it builds TensorDicts for every network input and output, runs the twin
    critics through vmap over functional parameter TensorDicts and constructs a `TanhNormal` distribution; on CPU
    that plumbing costs about as much as the maths. Here the same parameters are read as tensors: twin critics as
    batched matmuls over TorchRL's stacked parameters (`ensemble_mlp`), conv critics by swapping each slice into
    the module (`conv_ensemble`), the tanh-Gaussian's sample and log-prob by hand. The tensor maths is one
    method, `losses`, which `meta.compile` compiles. `conv`: the critics run through their modules (conv nets, and
    MLPs with `agent.net.layer_norm`), not as stacked matmuls.
    """

    discrete = False

    def __init__(self, actor: ProbabilisticActor, qvalue: TensorDictModule, *, actor_net: nn.Module,
                 activation: nn.Module, conv: bool = False, compile: bool = False, spectral_norm: bool = False,
                 twin_q: str = "min", **kwargs):
        super().__init__(actor, qvalue, **kwargs)
        # plain attributes, not submodules: the actor's module is registered once, inside `actor_network`
        self.__dict__.update(actor_net=actor_net, activation=activation, conv=conv, twin_mean=twin_q == "mean")
        params = self.qvalue_network_params
        target_params = self._modules["target_qvalue_network_params"]  # (getattr warns: no SoftUpdate yet)
        self.__dict__["q_layers"] = params if conv else stacked_layers(params)
        self.__dict__["target_q_layers"] = target_params if conv else stacked_layers(target_params)
        self.spectral_norm = spectral_norm
        if spectral_norm:  # power-iteration vectors of the online and target critics (checkpointed)
            weight = self.q_layers[-2][0]
            for prefix in ("", "target_"):
                for name, size in (("sn_u", weight.shape[1]), ("sn_v", weight.shape[2])):
                    self.register_buffer(prefix + name, F.normalize(
                        torch.randn(weight.shape[0], size, device=weight.device), dim=-1))
        if not self.discrete:
            space = kwargs["action_spec"].space
            self.register_buffer("action_mid", (space.high + space.low) / 2, persistent=False)
            self.register_buffer("action_half", (space.high - space.low) / 2, persistent=False)
        self.__dict__["compiled_losses"] = maybe_compile(self.losses, compile)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        critic, actor, alpha_loss, td_error, entropy = self.compiled_losses(*transition_tensors(self, tensordict),
                                                                            True)
        tensordict.set(self.tensor_keys.priority, td_error)
        return loss_output(loss_actor=actor, loss_qvalue=critic, loss_alpha=alpha_loss,
                           alpha=self.log_alpha.detach().exp(), entropy=entropy)

    def critic_loss(self, tensordict: TensorDictBase) -> TensorDict:
        """`loss_qvalue` alone (no actor pass); writes `td_error` as `forward` does."""
        critic, *_, td_error, _ = self.compiled_losses(*transition_tensors(self, tensordict), False)
        tensordict.set(self.tensor_keys.priority, td_error)
        return loss_output(loss_qvalue=critic)

    def q_values(self, layers, obs: torch.Tensor, action: torch.Tensor | None, detach: bool = False) -> torch.Tensor:
        """Twin Q: `[2, B]` for continuous (s, a); `[2, B, num_actions]` for discrete s."""
        if self.conv and self.discrete:
            return conv_ensemble(self.qvalue_network.module, layers["module"], obs, detach=detach)
        if self.conv:  # layer-norm critics: Q(s, a) through the module
            return conv_ensemble(self.qvalue_network.module, layers["module"], obs, action, detach=detach).squeeze(-1)
        if self.spectral_norm:  # refresh the power iteration on the passes that train or target the critics
            u, v = (self.target_sn_u, self.target_sn_v) if layers is self.target_q_layers else (self.sn_u, self.sn_v)
            layers = spectral_normalized(layers, u, v, update=not detach)
        if self.discrete:
            return ensemble_mlp(layers, obs, self.activation, detach)
        return state_action_ensemble(layers, obs, action, self.activation, detach)

    def twin(self, q: torch.Tensor) -> torch.Tensor:
        """The twin critics' `[2, ...]` values as one: their min, or their mean (`twin_q`)."""
        return q.mean(0) if self.twin_mean else q.min(0).values

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous: a reparameterized action and its log-prob. Discrete: probabilities and log-probabilities."""
        if self.discrete:
            log_probs = torch.log_softmax(self.actor_net(obs), -1)
            return log_probs.exp(), log_probs
        # TorchRL's TanhNormal, by hand: constructing the distribution cost ~25% of the loss (cProfile)
        loc, scale = self.actor_net(obs)
        u = loc + scale * torch.randn_like(loc)
        log_prob = tanh_normal_log_prob(u, loc, scale, self.action_half)  # first: autograd's order, bit-exact runs
        return self.action_mid + self.action_half * torch.tanh(u), log_prob

    def losses(self, obs, action, reward, not_terminal, next_obs, weight, update_actor: bool):
        """(critic loss, actor loss, alpha loss, |TD error|, entropy); the last three None but |TD error| without
        `update_actor`. The next action is drawn before the actor's (as `SACLoss`)."""
        alpha, huber = self.log_alpha.detach().exp(), self.loss_function == "smooth_l1"
        with torch.no_grad():
            if self.discrete:  # exact expectation over the categorical policy
                next_q = self.twin(self.q_values(self.target_q_layers, next_obs, None))
                next_probs, next_log_probs = self.act(next_obs)
                next_value = (next_probs * (next_q - alpha * next_log_probs)).sum(-1)
            else:
                next_action, next_log_prob = self.act(next_obs)
                next_value = self.twin(self.q_values(self.target_q_layers, next_obs, next_action)) \
                    - alpha * next_log_prob
            target = reward + self.value_estimator.gamma * not_terminal * next_value
        q = self.q_values(self.q_layers, obs, action)
        if self.discrete:
            q = q.gather(-1, action.expand(2, -1).unsqueeze(-1)).squeeze(-1)
        critic_loss = weighted_mean(regression(q, target.expand_as(q), huber).sum(0), weight)
        td_error = (q - target).detach().abs().max(0).values
        if not update_actor:
            return critic_loss, None, None, td_error, None
        if self.discrete:
            probs, log_probs = self.act(obs)
            q_pi = self.twin(self.q_values(self.q_layers, obs, None, detach=True))
            actor_loss = weighted_mean((probs * (alpha * log_probs - q_pi)).sum(-1), weight)
            log_prob = (probs * log_probs).sum(-1).detach()
        else:
            new_action, log_prob = self.act(obs)
            q_pi = self.twin(self.q_values(self.q_layers, obs, new_action, detach=True))
            actor_loss = weighted_mean(alpha * log_prob - q_pi, weight)
            log_prob = log_prob.detach()
        alpha_loss = weighted_mean(-self.log_alpha * (log_prob + self.target_entropy), weight)
        return critic_loss, actor_loss, alpha_loss, td_error, -log_prob.mean()


class FastSACLoss(FastSACMaths, SACLoss):
    """TorchRL's `SACLoss` (continuous actions, twin critics, v2) with its forward in plain torch (`FastSACMaths`)."""


class FastDiscreteSACLoss(FastSACMaths, DiscreteSACLoss):
    """TorchRL's `DiscreteSACLoss` with its forward in plain torch (`FastSACMaths`)."""

    discrete = True


# ------------------------------------------------------------------------------------------------ update
@dataclass(kw_only=True)
class SACAgent(Agent):
    """Stores each batch, then `training_iter` replayed gradient steps on the loss."""

    replay: ReplayPhase
    algo_spec: SACAlgorithmSpec
    max_entropy: float | None = None  # log(num_actions) of discrete actions (the scale of entropy_anneal)
    clip_grad_val: float | None = None
    terminated_key: str = "terminated"  # ("next", key) that stops bootstrapping (Atari: also a lost life)

    def __post_init__(self):
        self.params = trained_params(self.loss)
        self.polyak = polyak_lists(self.loss)

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        store_transitions(self.buffer, data, self.terminated_key)
        self.anneal(frame)
        return self.replay.run(self.buffer, frame, self.gradient_step, self.set_lr)

    def anneal(self, frame: int) -> None:
        """The frame clock's temperature (`alpha_anneal_frames`) and target entropy (`entropy_anneal`)."""
        spec, loss = self.algo_spec, self.loss
        with torch.no_grad():
            if spec.alpha_anneal_frames:  # down to 1e-8, not 0: log(alpha) stays finite
                alpha = spec.alpha_init * max(1.0 - frame / spec.alpha_anneal_frames, 1e-8)
                loss.log_alpha.fill_(math.log(alpha))
            if spec.entropy_anneal is not None:
                loss.target_entropy.fill_(spec.entropy_anneal.ratio(frame) * self.max_entropy)

    def gradient_step(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Critics every step; actor and temperature every `policy_delay`-th; then the polyak targets."""
        out = self.loss(batch) if count_step(self, self.replay.policy_delay) else self.loss.critic_loss(batch)
        metrics = optimize(out, self.optimizers, self.params, self.clip_grad_val)
        if "loss_actor" in out and (self.algo_spec.log_alpha_min is not None or self.algo_spec.log_alpha_max
                                    is not None):
            with torch.no_grad():
                self.loss.log_alpha.clamp_(self.algo_spec.log_alpha_min, self.algo_spec.log_alpha_max)
        soft_update(self.polyak, 1 - self.target_updater.eps)
        return metrics, batch["td_error"]


def check_switches(algo_spec: SACAlgorithmSpec, discrete: bool, conv: bool, hid_layers: list[int]) -> None:
    """SpecError for a temperature, target-entropy or critic switch that the rest of the spec leaves without effect."""
    tuned = {"alpha_lr": algo_spec.alpha_lr, "log_alpha_min": algo_spec.log_alpha_min,
             "log_alpha_max": algo_spec.log_alpha_max, "entropy_anneal": algo_spec.entropy_anneal}
    for key, value in tuned.items():
        if algo_spec.fixed_alpha and value is not None:
            raise SpecError(f"agent.algorithm.{key}", "has no effect with fixed_alpha: true (the temperature is not "
                            "tuned); remove it")
    if algo_spec.alpha_anneal_frames and not algo_spec.fixed_alpha:
        raise SpecError("agent.algorithm.alpha_anneal_frames", "anneals a fixed temperature: needs fixed_alpha: true")
    if algo_spec.spectral_norm and (conv or not hid_layers):
        raise SpecError("agent.algorithm.spectral_norm", "normalizes the penultimate layer of MLP critics: needs "
                        "agent.net.type MLPNet and at least one hidden layer")
    if None not in (algo_spec.log_alpha_min, algo_spec.log_alpha_max) and \
            algo_spec.log_alpha_min >= algo_spec.log_alpha_max:
        raise SpecError("agent.algorithm.log_alpha_min", f"{algo_spec.log_alpha_min} must be below log_alpha_max "
                        f"{algo_spec.log_alpha_max}")
    if algo_spec.entropy_anneal is not None and (not discrete or algo_spec.target_entropy != "auto"):
        raise SpecError("agent.algorithm.entropy_anneal", "sets the target entropy of discrete actions with "
                        "target_entropy: auto; remove it (or target_entropy)")


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble the SAC agent: actor, twin critics in the loss, polyak targets, three Adams."""
    info = env_info(env)
    check_net(spec, conv=info["discrete"])
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    check_switches(algo_spec, info["discrete"], net_spec.type == "ConvNet", net_spec.hid_layers)
    conv = net_spec.type == "ConvNet"
    obs_dim = math.prod(info["obs_shape"])
    max_entropy = math.log(info["num_actions"]) if info["discrete"] else None
    entropy = target_entropy(algo_spec, info) if algo_spec.entropy_anneal is None else \
        algo_spec.entropy_anneal.ratio(0) * max_entropy
    common = dict(loss_function=loss_function(net_spec), alpha_init=algo_spec.alpha_init,
                  fixed_alpha=algo_spec.fixed_alpha, target_entropy=entropy,
                  activation=ACTIVATIONS[net_spec.hid_layers_activation](), compile=spec.meta.compile,
                  spectral_norm=algo_spec.spectral_norm, twin_q=algo_spec.twin_q)
    if info["discrete"]:
        n = info["num_actions"]
        def make_net() -> nn.Module:  # observation -> one output per action (logits, or Q-values)
            return build_q_net(info["obs_shape"], n, net_spec) if conv else build_mlp(obs_dim, n, net_spec)

        actor_net = make_net()
        actor = ProbabilisticActor(TensorDictModule(actor_net, ["observation"], ["logits"]), in_keys=["logits"],
                                   distribution_class=Categorical, spec=info["action_spec"], return_log_prob=True)
        qnet = ValueOperator(make_net(), in_keys=["observation"], out_keys=["action_value"])
        loss = FastDiscreteSACLoss(actor, qnet, num_actions=n, action_space="categorical", actor_net=actor_net,
                                   conv=conv or net_spec.layer_norm, **common)
    else:
        action_spec = info["action_spec"]
        actor_net = nn.Sequential(build_mlp(obs_dim, 2 * info["action_dim"], net_spec), NormalParamExtractor())
        actor = ProbabilisticActor(TensorDictModule(actor_net, ["observation"], ["loc", "scale"]),
                                   in_keys=["loc", "scale"], distribution_class=TanhNormal,
                                   distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
                                   spec=action_spec, return_log_prob=True)
        qnet = ValueOperator(StateActionMLP(build_mlp(obs_dim + info["action_dim"], 1, net_spec)),
                             in_keys=["observation", "action"])
        loss = FastSACLoss(actor, qnet, num_qvalue_nets=2, action_spec=action_spec, actor_net=actor_net,
                           conv=net_spec.layer_norm, **common)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=algo_spec.gamma)
    actor_optim = net_spec.actor_optim_spec or net_spec.optim_spec
    optimizers = {
        "actor": make_optimizer(actor_net.parameters(), actor_optim),
        "critic": make_optimizer(loss.qvalue_network_params.values(True, True),
                                 net_spec.critic_optim_spec or net_spec.optim_spec),
    }
    if not algo_spec.fixed_alpha:
        alpha_optim = actor_optim if algo_spec.alpha_lr is None else dataclasses.replace(actor_optim,
                                                                                         lr=algo_spec.alpha_lr)
        optimizers["alpha"] = make_optimizer([loss.log_alpha], alpha_optim)
    space = info["action_spec"].space
    nets = (PlainNets(nn.Identity(), actor_net, None, "Categorical") if info["discrete"] else
            PlainNets(nn.Identity(), actor_net, None, "TanhNormal", ("loc", "scale"), TanhNormal,
                      {"low": space.low, "high": space.high}, low=space.low, high=space.high))
    return SACAgent(
        policy=PlainPolicy(actor, nets), actor=actor, loss=loss, optimizers=optimizers,
        frames_per_batch=frames_per_batch(spec),
        max_frame=spec.env.max_frame, buffer=make_replay_buffer(spec.agent.memory, env=env),  # frames: once each
        target_updater=SoftUpdate(loss, tau=net_spec.polyak_coef), lr_scheduler_spec=net_spec.lr_scheduler_spec,
        init_random_frames=algo_spec.training_start_step, replay=ReplayPhase.from_spec(spec),
        algo_spec=algo_spec, max_entropy=max_entropy, clip_grad_val=net_spec.clip_grad_val,
        terminated_key=learning_keys(env)[1],
    )
