"""Actor and critic builders shared by the policy-gradient family (REINFORCE, A2C, PPO).

Action distributions: `Categorical` over logits for discrete spaces (`OneHotCategorical` for a one-hot action
spec); for continuous spaces a Gaussian whose
log std is a free parameter (state-independent, the PPO paper's choice) or a second head
(`agent.net.state_dependent_std`). Actions are rescaled to the env's bounds: the network works in [-1, 1]
units and `loc = center + half_range * mu`, `scale = half_range * std`; with `tanh_squash` TorchRL's
`TanhNormal` squashes samples into [low, high] instead (its log-prob includes the tanh Jacobian). Unsquashed
samples can leave the box; the gymnasium envs in specs/ clip actions themselves (the stored action, and its
log-prob, stay unclipped, as in SB3).

With `agent.net.shared` one trunk feeds both heads (`ActorValueOperator`) and one optimizer trains it;
otherwise actor and critic are separate networks with their own optimizers.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from torch import nn
from torch.distributions import Categorical
from torchrl.envs import EnvBase, ExplorationType, exploration_type
from torchrl.modules import (
    ActorValueOperator,
    IndependentNormal,
    OneHotCategorical,
    ProbabilisticActor,
    TanhNormal,
    ValueOperator,
)
from torchrl.objectives.value import GAE, TD1Estimator, ValueEstimatorBase

from zoo.agent import clip_grad, make_optimizer
from zoo.envs import env_info
from zoo.nets import ACTIVATIONS, build_mlp, build_torso, init_weights, normal_log_prob, tanh_normal_log_prob
from zoo.spec import NetSpec

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class GaussianHead(nn.Module):
    """features -> (loc, scale) of a diagonal Gaussian, rescaled to the action box unless squashed by tanh."""

    def __init__(self, in_dim: int, action_dim: int, low: torch.Tensor, high: torch.Tensor, *,
                 state_dependent_std: bool, log_std_init: float, tanh_squash: bool):
        super().__init__()
        self.state_dependent_std = state_dependent_std
        self.mean = nn.Linear(in_dim, action_dim)
        if state_dependent_std:
            self.log_std = nn.Linear(in_dim, action_dim)
            nn.init.zeros_(self.log_std.weight)
            nn.init.constant_(self.log_std.bias, log_std_init)
        else:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        # TanhNormal maps to [low, high] itself; otherwise rescale [-1, 1] network units to the box here
        center, half = ((high + low) / 2, (high - low) / 2) if not tanh_squash else (torch.zeros_like(low),
                                                                                      torch.ones_like(low))
        self.register_buffer("center", center)
        self.register_buffer("half_range", half)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.mean(features)
        log_std = self.log_std(features) if self.state_dependent_std else self.log_std.expand_as(mu)
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        return self.center + self.half_range * mu, self.half_range * std


def _policy_head(in_dim: int, info: dict, net_spec: NetSpec, tanh_squash: bool, hid_layers: list[int]) -> nn.Module:
    """MLP over features, ending in logits (discrete) or a GaussianHead (continuous)."""
    if info["discrete"]:
        head = build_mlp(in_dim, info["num_actions"], net_spec, hid_layers)
        init_weights(head[-1], "orthogonal" if net_spec.init_fn == "orthogonal" else "default", gain=0.01)
        return head
    space = info["action_spec"].space
    body = build_mlp(in_dim, hid_layers[-1], net_spec, hid_layers[:-1]) if hid_layers else nn.Identity()
    act = ACTIVATIONS[net_spec.hid_layers_activation]() if hid_layers else nn.Identity()
    gaussian = GaussianHead(hid_layers[-1] if hid_layers else in_dim, info["action_dim"], space.low, space.high,
                            state_dependent_std=net_spec.state_dependent_std, log_std_init=net_spec.log_std_init,
                            tanh_squash=tanh_squash)
    init_weights(gaussian.mean, "orthogonal" if net_spec.init_fn == "orthogonal" else "default", gain=0.01)
    return nn.Sequential(body, act, gaussian)


def _probabilistic_actor(module: nn.Module, info: dict, tanh_squash: bool, in_key: str) -> ProbabilisticActor:
    if info["discrete"]:
        td_module = TensorDictModule(module, [in_key], ["logits"])
        dist_class, dist_kwargs = OneHotCategorical if info["one_hot"] else Categorical, {}
    else:
        td_module = TensorDictModule(module, [in_key], ["loc", "scale"])
        space = info["action_spec"].space
        dist_class, dist_kwargs = ((TanhNormal, {"low": space.low, "high": space.high}) if tanh_squash
                                   else (IndependentNormal, {}))
    return ProbabilisticActor(td_module, in_keys=list(td_module.out_keys), spec=info["action_spec"],
                              distribution_class=dist_class, distribution_kwargs=dist_kwargs, return_log_prob=True)


@dataclass
class PlainNets:
    """The actor's and critic's networks as plain torch modules, the very parameters of the TorchRL modules.

    `trunk` maps observations to features (identity unless `agent.net.shared`); `policy` maps features to logits
    (`distribution` "categorical") or to (loc, scale) of a Gaussian ("normal", or "tanh_normal": squashed into
    [low, high] as TorchRL's `TanhNormal`); `value` maps features to V. Losses that compute in plain torch (PPO)
    run these instead of the TensorDict modules: the same functions of the same parameters, without the
    per-call TensorDict and distribution plumbing.
    """

    trunk: nn.Module
    policy: nn.Module
    value: nn.Module | None
    distribution: str
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None


class PlainPolicy(TensorDictModuleBase):
    """The collector's policy: the `ProbabilisticActor`'s draw in one plain-torch pass over its own networks.

    Same parameters, distribution and draws as `actor` (Categorical through `torch.multinomial`, Gaussians
    through `torch.normal`, as torch's distributions sample), writing `action` and `action_log_prob` (and, with
    a shared trunk, `state_value`, which spares GAE a critic pass) as plain tensors. Why: per collector step
    the actor's TensorDictModule / distribution plumbing costs more than a CartPole-sized MLP, and
    tensordict 0.14 routes every `TensorDictModule` output through `TensorDictBase.from_any`, which calls
    `importlib.util.find_spec("pandas")` (tensordict/base.py, `from_any`): file-system probes on every call
    where pandas is not installed. Outside `ExplorationType.RANDOM` it defers to `actor` (greedy or mean
    actions exactly as TorchRL defines them).
    """

    def __init__(self, actor: ProbabilisticActor, nets: "PlainNets", *, one_hot: bool = False,
                 record_value: bool = False):
        super().__init__()
        # the actor's parameters under the actor's own names, so the state dict is the actor's; the networks
        # are the same modules, held unregistered (a tuple) so that they are not counted twice
        self.module = actor.module
        self.deferred, self.nets = (actor,), (nets.trunk, nets.policy, nets.value if record_value else None)
        self.distribution, self.one_hot = nets.distribution, one_hot
        if nets.distribution == "tanh_normal":
            self.register_buffer("action_mid", (nets.high + nets.low) / 2, persistent=False)
            self.register_buffer("action_half", (nets.high - nets.low) / 2, persistent=False)
        self.in_keys = ["observation"]
        self.out_keys = ["action", "action_log_prob"] + (["state_value"] if record_value else [])

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if exploration_type() not in (ExplorationType.RANDOM, None):
            return self.deferred[0](tensordict)
        trunk, policy_head, value_head = self.nets
        features = trunk(tensordict.get("observation"))
        out = policy_head(features)
        if self.distribution == "categorical":
            log_probs = out.log_softmax(-1)
            flat = log_probs.reshape(-1, log_probs.shape[-1]).exp()
            index = torch.multinomial(flat, 1, True).reshape(log_probs.shape[:-1])
            log_prob = log_probs.gather(-1, index.unsqueeze(-1)).squeeze(-1)
            action = F.one_hot(index, log_probs.shape[-1]) if self.one_hot else index
        else:
            loc, scale = out
            u = torch.normal(loc, scale)
            if self.distribution == "normal":
                action, log_prob = u, normal_log_prob(u, loc, scale).sum(-1)
            else:
                action = self.action_mid + self.action_half * u.tanh()
                log_prob = tanh_normal_log_prob(u, loc, scale, self.action_half)
        tensordict.set("action", action)
        tensordict.set("action_log_prob", log_prob)
        if value_head is not None:
            tensordict.set("state_value", value_head(features))
        return tensordict


class ActorCritic(NamedTuple):
    actor: ProbabilisticActor  # TorchRL's: acts in collectors, log-probs under "action_log_prob"
    critic: TensorDictModule | None  # writes "state_value"
    module: nn.Module  # holds every parameter once (for optimizers and checkpoints)
    nets: PlainNets


def build_actor_critic(env: EnvBase, net_spec: NetSpec, *, tanh_squash: bool = False,
                       critic: bool = True) -> ActorCritic:
    """Actor, critic and the module holding every parameter for `env`; shared trunk when `net_spec.shared`."""
    info = env_info(env)
    distribution = "categorical" if info["discrete"] else "tanh_normal" if tanh_squash else "normal"
    space = None if info["discrete"] else info["action_spec"].space
    bounds = {"low": space.low, "high": space.high} if tanh_squash else {}
    torso, feat_dim = build_torso(info["obs_shape"], net_spec)
    if net_spec.shared and critic:
        widths = net_spec.hid_layers
        trunk = nn.Sequential(torso, build_mlp(feat_dim, widths[-1], net_spec, widths[:-1]),
                              ACTIVATIONS[net_spec.hid_layers_activation]())
        policy_head = _policy_head(widths[-1], info, net_spec, tanh_squash, [])
        value_head = build_mlp(widths[-1], 1, net_spec, [])
        common = TensorDictModule(trunk, ["observation"], ["hidden"])
        operator = ActorValueOperator(common, _probabilistic_actor(policy_head, info, tanh_squash, "hidden"),
                                      ValueOperator(value_head, in_keys=["hidden"]))
        nets = PlainNets(trunk, policy_head, value_head, distribution, **bounds)
        return ActorCritic(operator.get_policy_operator(), operator.get_value_operator(), operator, nets)
    actor_module = nn.Sequential(torso, _policy_head(feat_dim, info, net_spec, tanh_squash, net_spec.hid_layers))
    actor = _probabilistic_actor(actor_module, info, tanh_squash, "observation")
    if not critic:
        return ActorCritic(actor, None, actor, PlainNets(nn.Identity(), actor_module, None, distribution, **bounds))
    critic_torso, _ = build_torso(info["obs_shape"], net_spec)
    value_net = nn.Sequential(critic_torso, build_mlp(feat_dim, 1, net_spec))
    value = ValueOperator(value_net, in_keys=["observation"])
    nets = PlainNets(nn.Identity(), actor_module, value_net, distribution, **bounds)
    return ActorCritic(actor, value, nn.ModuleList([actor, value]), nets)


def build_optimizers(net_spec: NetSpec, actor: nn.Module, critic: nn.Module | None,
                     all_params: nn.Module) -> dict[str, torch.optim.Optimizer]:
    """One optimizer over a shared net (or an actor alone); separate actor / critic optimizers otherwise."""
    if net_spec.shared or critic is None:
        return {"net": make_optimizer(all_params.parameters(), net_spec.optim_spec)}
    return {"actor": make_optimizer(actor.parameters(), net_spec.actor_optim_spec or net_spec.optim_spec),
            "critic": make_optimizer(critic.parameters(), net_spec.critic_optim_spec or net_spec.optim_spec)}


def optimizer_step(optimizers: dict[str, torch.optim.Optimizer], loss: torch.Tensor, params: list[nn.Parameter],
                   max_norm: float | None) -> None:
    """Backward `loss` (actor and critic terms summed: their parameters are disjoint or shared) and step all."""
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    loss.backward()
    clip_grad(params, max_norm)
    for opt in optimizers.values():
        opt.step()


def make_advantage_module(gamma: float, lam: float | None, critic: TensorDictModule | None,
                          keys: tuple[str, str] = ("done", "terminated")) -> ValueEstimatorBase:
    """GAE(lambda) when `lam` is set, else TD(1): discounted rewards to the rollout's end, bootstrapped there.

    Both run on the `[num_envs, T]` batch (time last), stop at `("next", "terminated")` and bootstrap through
    truncation from the true final observation, and write `advantage`, `value_target` and `state_value`.
    `keys` = (done, terminated) to read instead, from `zoo.envs.learning_keys(env)` (Atari end of life).
    Without a `critic` they read `state_value` and `("next", "state_value")` from the batch.
    """
    if lam is None:
        estimator = TD1Estimator(gamma=gamma, value_network=critic)
    else:
        estimator = GAE(gamma=gamma, lmbda=lam, value_network=critic)
    estimator.set_keys(done=keys[0], terminated=keys[1])
    return estimator
