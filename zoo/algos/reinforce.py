"""REINFORCE (Williams 1992): Monte-Carlo policy gradient with an optional mean baseline and entropy bonus.

Each batch is `time_horizon` steps of every env. The return of step t is the discounted reward-to-go to the
end of its episode (`reward2go`), so only steps whose episode ends inside the batch have one; the tail of
each env's unfinished episode is left out of the gradient (its later steps are learned from in the next
batch, where their episode ends). Returns stop at truncation as well as termination: without a critic there
is nothing to bootstrap from.

Built from TorchRL: `ProbabilisticActor` and `A2CLoss` with `critic_coeff=None`, which computes exactly the
REINFORCE objective `-log pi(a|s) * G` plus the entropy bonus and never calls a critic. `ReinforceLoss` is not
used: it always trains a critic (TypeError without one) and has no entropy term.
"""

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import ValueOperator
from torchrl.objectives import A2CLoss
from torchrl.objectives.value.functional import reward2go

from zoo.agent import Agent
from zoo.algos.actor_critic import build_actor_critic, build_optimizers, optimizer_step
from zoo.schedules import Schedule
from zoo.spec import AlgorithmSpec, ScheduleSpec, Spec, register_algorithm_spec, spec_field

NAMES = ("Reinforce",)


@register_algorithm_spec(*NAMES, memories=("OnPolicyBatchReplay", "OnPolicyReplay"), nets=("MLPNet", "ConvNet"),
                         one_hot_actions=True)
@dataclass
class ReinforceAlgorithmSpec(AlgorithmSpec):
    """Hyperparameters of REINFORCE."""

    center_return: bool = spec_field(True, "subtract the batch's mean return (a constant baseline)")
    entropy_coef_spec: ScheduleSpec = spec_field(ScheduleSpec(start_val=0.01), "entropy bonus on the frame clock")
    time_horizon: int = spec_field(500, "steps per env in each batch (episodes must end inside it to count)", low=1)
    tanh_squash: bool = spec_field(False, "continuous actions: squash the Gaussian with tanh into the bounds")


class NoCritic(nn.Module):
    """A parameter-free stand-in for the critic `A2CLoss` insists on; never called with critic_coeff=None."""

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return observation.new_zeros(*observation.shape[:-1], 1)


def monte_carlo_returns(data: TensorDictBase, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Discounted reward-to-go `[N, T, 1]` of each step, and whether its episode ends inside the batch."""
    done = data["next", "done"]
    returns = reward2go(data["next", "reward"], done, gamma, time_dim=-2)
    complete = done.flip(-2).cummax(-2).values.flip(-2)  # a done at or after t in the same env
    return returns, complete


@dataclass(kw_only=True)
class ReinforceAgent(Agent):
    """One gradient step per batch on the steps whose returns are complete."""

    algo_spec: ReinforceAlgorithmSpec
    params: list[nn.Parameter]
    clip_grad_val: float | None = None

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        lr = self.set_lr(frame)
        entropy_coef = self.schedules["entropy_coef"](frame)
        self.loss.entropy_coeff.fill_(entropy_coef)
        with torch.no_grad():
            returns, complete = monte_carlo_returns(data, self.algo_spec.gamma)
            mask = complete.to(returns.dtype)
            count = mask.sum().clamp_min(1.0)
            if self.algo_spec.center_return:
                returns = returns - (returns * mask).sum() / count
            # zero the incomplete steps and rescale so the loss's mean is a mean over complete steps
            data["advantage"] = returns * mask * (mask.numel() / count)
        out = self.loss(data)
        loss = out["loss_objective"] + out["loss_entropy"]
        optimizer_step(self.optimizers, loss, self.params, self.clip_grad_val)
        self.num_updates += 1
        return {"loss": loss.detach(), "entropy": out["entropy"], "entropy_coef": torch.tensor(entropy_coef),
                "lr_factor": torch.tensor(lr)}


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble REINFORCE for `env` from the spec."""
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    actor, _, module, _ = build_actor_critic(env, net_spec, tanh_squash=algo_spec.tanh_squash, critic=False)
    entropy_coef = Schedule(algo_spec.entropy_coef_spec)
    # entropy_coeff=1.0 only switches the term on (a zero coefficient would drop it); update() sets the value
    loss = A2CLoss(actor, ValueOperator(NoCritic(), in_keys=["observation"]), critic_coeff=None, entropy_coeff=1.0)
    return ReinforceAgent(
        policy=actor, actor=actor, loss=loss, optimizers=build_optimizers(net_spec, actor, None, module),
        frames_per_batch=algo_spec.time_horizon * spec.env.num_envs, max_frame=spec.env.max_frame,
        schedules={"entropy_coef": entropy_coef}, lr_scheduler_spec=net_spec.lr_scheduler_spec,
        algo_spec=algo_spec, params=list(module.parameters()), clip_grad_val=net_spec.clip_grad_val,
    )
