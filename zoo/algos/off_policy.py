"""What SAC, TD3 and CrossQ share, as functions their agents call (no base class): the policy-delay phase
(`count_step`), one optimisation step over a loss's output (`optimize`), polyak averaging over cached tensor
lists (`soft_update`), twin Q-networks as batched matmuls over TorchRL's stacked parameters (`ensemble_mlp`,
`conv_ensemble`), and spec checks. The replayed training phase they run (`ReplayPhase`) is the DQN family's
too and lives in zoo/memory.py.

Importance weights enter zoo's losses as mean(w * loss) (Schaul et al. 2016, as zoo's DQN); TorchRL's losses divide
by sum(w), so with prioritized replay zoo's loss values are TorchRL's times mean(w).
"""

import math

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torch.nn import functional as F
from torchrl.objectives import LossModule

from zoo.agent import Agent, clip_grad
from zoo.spec import AlgorithmSpec, Spec, SpecError


class StateActionMLP(nn.Module):
    """Q(s, a) = MLP([s, a])."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.mlp = mlp

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([observation, action], -1))


def check_net(spec: Spec, conv: bool = False) -> None:
    """MLPNet (and ConvNet where `conv`: the env decides, so load_spec's declaration-based check cannot)."""
    allowed = ("MLPNet", "ConvNet") if conv else ("MLPNet",)
    if spec.agent.net.type not in allowed:
        raise SpecError("agent.net.type", f"{spec.agent.algorithm.name} supports {' or '.join(allowed)} here, "
                        f"got {spec.agent.net.type}")


def target_entropy(algo_spec: AlgorithmSpec, info: dict) -> float:
    if isinstance(algo_spec.target_entropy, str):
        if algo_spec.target_entropy != "auto":
            raise SpecError("agent.algorithm.target_entropy",
                            f"'{algo_spec.target_entropy}' is not allowed; a number or 'auto'")
        return 0.98 * math.log(info["num_actions"]) if info["discrete"] else -float(info["action_dim"])
    return float(algo_spec.target_entropy)


# ------------------------------------------------------------------------------------- the loss's tensor maths
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


def spectral_normalized(layers: list[tuple[torch.Tensor, torch.Tensor]], u: torch.Tensor, v: torch.Tensor,
                        update: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`layers` with the penultimate Linear's weights `[K, out, in]` divided by their spectral norms (Miyato et al.
    2018; Gogianu et al. 2021 on the critic's penultimate layer), estimated as `torch.nn.utils.parametrizations.
    spectral_norm` does from the singular-vector estimates `u` `[K, out]` and `v` `[K, in]`: sigma = u^T W v, after
    one power-iteration step that refreshes `u` and `v` in place when `update` (torch's training mode)."""
    weight, bias = layers[-2]
    if update:
        with torch.no_grad():
            u.copy_(F.normalize(torch.bmm(weight, v.unsqueeze(-1)).squeeze(-1), dim=-1, eps=1e-12))  # W v
            v.copy_(F.normalize(torch.bmm(u.unsqueeze(1), weight).squeeze(1), dim=-1, eps=1e-12))  # W^T u
    sigma = torch.einsum("ko,koi,ki->k", u, weight, v)
    return [*layers[:-2], (weight / sigma[:, None, None], bias), layers[-1]]


def state_action_ensemble(layers: list[tuple[torch.Tensor, torch.Tensor]], obs: torch.Tensor, action: torch.Tensor,
                          activation: nn.Module, detach: bool = False) -> torch.Tensor:
    """K stacked Q(s, a) MLPs (`StateActionMLP`) -> `[K, B]`."""
    return ensemble_mlp(layers, torch.cat([obs, action], -1), activation, detach).squeeze(-1)


def conv_ensemble(module: nn.Module, params: TensorDictBase, *inputs: torch.Tensor,
                  detach: bool = False) -> torch.Tensor:
    """K nets that are not plain Linear stacks (conv, layer-norm MLPs) on the same inputs -> `[K, B, out]`: each slice
    of TorchRL's stacked parameters `[K, ...]` swapped into `module` in turn (~1 ms for a pair, against ~200 ms
    forward + backward of twin Nature CNNs, batch 32)."""
    outs = []
    for net_params in params.unbind(0):
        with (net_params.detach() if detach else net_params).to_module(module):
            outs.append(module(*inputs))
    return torch.stack(outs)


def transition_tensors(loss: LossModule, tensordict: TensorDictBase) -> tuple[torch.Tensor, ...]:
    """(observation, action, reward, not_terminal, next observation, importance weight or None) of a batch of
    one-step transitions, under the loss's `tensor_keys`; rewards and flags `[B]`."""
    keys = loss.tensor_keys
    reward = tensordict.get(("next", keys.reward)).squeeze(-1)
    not_terminal = (~tensordict.get(("next", keys.terminated))).squeeze(-1).to(reward.dtype)
    weight_key = getattr(keys, "priority_weight", None)  # CrossQLoss's keys have none
    return (tensordict.get("observation"), tensordict.get(keys.action), reward, not_terminal,
            tensordict.get(("next", "observation")), tensordict.get(weight_key, None) if weight_key else None)


def maybe_compile(fn, enabled: bool):
    """`torch.compile` a loss's tensor maths when `meta.compile` (optimizer steps stay eager, fused Adam)."""
    return torch.compile(fn, dynamic=False) if enabled else fn


# ---------------------------------------------------------------------------------------- the update's steps
def trained_params(loss: LossModule) -> dict[str, list[torch.Tensor]]:
    """The trainable tensors of a TorchRL actor-critic loss by the optimizer that steps them (`optimize` clips
    their gradients): `critic`, `actor`."""
    return {name: [p for p in getattr(loss, f"{net}_network_params").values(True, True) if p.requires_grad]
            for name, net in (("critic", "qvalue"), ("actor", "actor"))}


def count_step(agent: Agent, policy_delay: int) -> bool:
    """Count one gradient step in `agent.num_updates`; True on every `policy_delay`-th step, from the first (the
    steps that also update the actor). The phase lives in `num_updates`, so checkpoints keep it."""
    update_actor = agent.num_updates % policy_delay == 0
    agent.num_updates += 1
    return update_actor


def optimize(out: TensorDictBase, optimizers: dict[str, torch.optim.Optimizer], params: dict[str, list],
             max_norm: float | None) -> dict[str, torch.Tensor]:
    """Backpropagate the sum of a loss's terms (`loss_qvalue`, and `loss_actor` / `loss_alpha` where present) and
    step the optimizers they train (`critic`; `actor` and `alpha` where `loss_actor` is present), clipping the
    `params` of each net to `max_norm`. Returns the metrics: `loss` (critic), `loss_actor`, `entropy`, `alpha`."""
    terms = [out[key] for key in ("loss_qvalue", "loss_actor", "loss_alpha") if key in out]
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    sum(terms[1:], terms[0]).backward()
    nets = ("critic", "actor") if "loss_actor" in out else ("critic",)
    for name in nets:
        clip_grad(params[name], max_norm)
        optimizers[name].step()
    if "loss_actor" in out and "alpha" in optimizers:
        optimizers["alpha"].step()
    metrics = {"loss": out["loss_qvalue"].detach()}
    for key in ("loss_actor", "entropy", "alpha"):
        if key in out:
            metrics[key] = out[key].detach()
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


def soft_update(polyak: tuple[list[torch.Tensor], list[torch.Tensor]], tau: float) -> None:
    """`SoftUpdate.step`'s polyak averaging, target <- target + tau (source - target), as one `_foreach_lerp_`
    over `polyak_lists(loss)`: the TensorDict walk of `SoftUpdate.step` costs ~20x more per call (SAC Pendulum
    64x64 twin critics), noticeable at one call per gradient step."""
    with torch.no_grad():
        torch._foreach_lerp_(*polyak, tau)


def loss_output(**terms: torch.Tensor) -> TensorDict:
    """A loss's scalar outputs as TorchRL returns them: a TensorDict with an empty batch size."""
    return TensorDict(terms, batch_size=[])
