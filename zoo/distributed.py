"""`env.collector: ray`: TorchRL's `RayCollector`, its collector actors on a Ray cluster (the optional extra
`zoo[distributed]`), a learner in this process.

Two choices differ from RayCollector's defaults, both for a worker that dies mid-run (a preempted machine, an OOM
kill):
- Ray restarts a dead collector actor (`max_restarts`) and retries the batch it was collecting
  (`max_task_retries`), so the run continues; the restarted actor builds its env again from its seed.
- Weights reach the actors as one Ray object per update, loaded into each actor's policy by an actor call that
  Ray orders before the actor's next batch. TorchRL's default `RayWeightSyncScheme` sends them over a Gloo process
  group whose receiver is registered once, at start: a restarted actor has none, and the group breaks with the
  dead peer. The batch a restarted actor collects before the next push acts with the weights it was created
  with (the run's first); on-policy losses see those actions' own log-probabilities, stored with them.

zoo.components imports this module only for `env.collector: ray`: importing TorchRL's distributed collectors
takes seconds, which no other run should pay.
"""

import os

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector

from zoo.spec import SpecError

try:
    import ray
    from torchrl.collectors.distributed import RayCollector
except ImportError:  # the optional extra is not installed: make_ray_collector says which to install
    ray = RayCollector = None

MAX_RESTARTS = 4  # per actor: a worker that dies that often is failing, not preempted


def make_ray_collector(env_fns: list, policy: torch.nn.Module, *, address: str, frames_per_batch: int,
                       total_frames: int, init_random_frames: int, postproc) -> "RayCollector":
    """A synchronous RayCollector: one actor per env factory, each collecting `frames_per_batch / len(env_fns)`
    frames per batch; the learner receives them stacked `[workers, copies, time]` (then `postproc`)."""
    if ray is None:
        raise SpecError("env.collector", "ray needs the ray package: pip install -e \".[distributed]\"")
    workers = len(env_fns)
    if address == "local":  # a private instance with a CPU for every actor, torn down with the collector
        init = {"address": "local", "num_cpus": max(workers, os.cpu_count() or 1), "include_dashboard": False,
                "log_to_driver": False}  # worker errors still reach the learner, raised by the batch they spoil
    else:
        init = {"address": address, "log_to_driver": False}
    collector = RayCollector(
        env_fns, policy, frames_per_batch=frames_per_batch, total_frames=total_frames,
        init_random_frames=init_random_frames, postproc=postproc, sync=True, num_collectors=workers,
        collector_class=Collector, device="cpu",
        collector_kwargs={"auto_register_policy_transforms": False, "track_traj_ids": False},
        remote_configs={"num_cpus": 1, "max_restarts": MAX_RESTARTS, "max_task_retries": MAX_RESTARTS},
        ray_init_config=init,
        weight_sync_schemes={},  # zoo pushes the weights itself: push_ray_weights
    )
    collector._lazy_initialize_weight_sync()  # with no schemes: marks the (empty) sync done, silencing its warning
    push_ray_weights(collector, policy)
    return collector


def push_ray_weights(collector: "RayCollector", policy: torch.nn.Module) -> None:
    """Send `policy`'s parameters and buffers (exploration state too) to every collector actor, without waiting:
    each actor loads them before its next batch."""
    weights = ray.put(TensorDict.from_module(policy).data.cpu())
    for actor in collector.remote_collectors:
        actor.__ray_call__.remote(load_policy_weights, weights)


def load_policy_weights(collector: Collector, weights: TensorDictBase) -> None:
    """Run inside a collector actor: its policy takes `weights`."""
    weights.to_module(collector.policy)

