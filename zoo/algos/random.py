"""Random (SLM-Lab's): uniform actions from the env's action space, no learning; the baseline any learner must beat.

It runs through the normal session loop, so a run directory records what chance scores on a task: training
and evaluation returns (both uniform: there is no greedy policy), metrics rows, checkpoints. Actions are drawn
with `spec.rand` (torch's global RNG, checkpointed: resume is exact), in the collector and in evaluation alike.
"""

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import TensorSpec
from torchrl.envs import EnvBase

from zoo.agent import Agent
from zoo.envs import env_info
from zoo.spec import AlgorithmSpec, Spec, register_algorithm_spec, spec_field

NAMES = ("Random",)


@register_algorithm_spec(*NAMES, memories=("OnPolicyReplay", "OnPolicyBatchReplay"), nets=(), one_hot_actions=True,
                         multi_actions=True)
@dataclass
class RandomAlgorithmSpec(AlgorithmSpec):
    """Settings of the Random agent."""

    time_horizon: int = spec_field(32, "steps per env in each collected batch (nothing is learned from them)", low=1)


class UniformActions(TensorDictModuleBase):
    """Writes `action`: one uniform draw from the (unbatched) action spec per entry of the input's batch."""

    in_keys, out_keys = ["observation"], ["action"]

    def __init__(self, action_spec: TensorSpec):
        super().__init__()
        self.action_spec = action_spec

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict.set("action", self.action_spec.rand(tensordict.batch_size))

    def __repr__(self) -> str:
        return f"UniformActions({type(self.action_spec).__name__} action spec)"


@dataclass(kw_only=True)
class RandomAgent(Agent):
    """Learns nothing: `update` returns no statistics."""

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        return {}


def build(spec: Spec, env: EnvBase) -> Agent:
    """The Random agent for `env`: one uniform policy, for collection and evaluation."""
    policy = UniformActions(env_info(env)["action_spec"])
    return RandomAgent(policy=policy, actor=policy, loss=None, optimizers={},
                       frames_per_batch=spec.agent.algorithm.time_horizon * spec.env.num_envs,
                       max_frame=spec.env.max_frame)
