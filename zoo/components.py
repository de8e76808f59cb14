"""Spec -> component graph: the TorchRL objects of one session, built once and handed to the loop.

`meta.distributed` (A3C-style asynchronous actor-learners) maps SLM-Lab's Hogwild modes onto TorchRL's
`MultiAsyncCollector`: its worker processes act, the one learner (this process) applies each worker's batch as it
arrives. How the workers see the learner's weights is the mode:
- `synced`: the workers act with a copy of the policy, refreshed from the learner's after every update
  (`update_policy_weights_`; SLM-Lab's synced: a worker pulls the global weights after each gradient push). A push
  reaches every worker at once, also mid-batch (TorchRL keeps one weight buffer per device, not per worker).
- `shared`: the workers act with the learner's own parameters, each step seeing them as the optimizer last wrote
  them (also between PPO's minibatch steps); nothing is pushed (SLM-Lab's shared: workers use the global net).
TorchRL 0.14 makes both possible: a policy handed to a worker process travels as shared memory (its CPU tensors
are moved there, not copied), and its default `SharedMemWeightSyncScheme` copies weights into that memory, so the
collector's policy *is* what the workers act with. `meta.distributed: false` with multi_async acts as shared does,
plus TorchRL's acknowledged handshake after each update.
What differs from SLM-Lab's Hogwild, and why: there every worker is also a learner that computes gradients on its
own batch and writes them into the global net, unlocked, so updates race; here one learner computes every
gradient with the current weights, so nothing races, and the asynchrony shows up as policy lag instead: a batch
was collected by weights one or more updates old. On-policy losses then learn slightly off-policy;
`agent.algorithm.off_policy_correction: vtrace` (IMPALA) corrects it. One learner keeps the optimizer, its
statistics and the checkpoint in one place, which is why zoo does not reproduce the racing writes.
"""

import copy
import ctypes
import random
import signal
import sys
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import BaseCollector, Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.envs import EnvBase, Transform
from torchrl.modules.utils import get_primers_from_module

from zoo.agent import Agent
from zoo.algos import ALGORITHMS
from zoo.envs import env_info, make_env, normalizers, sync_eval_env
from zoo.spec import ALGORITHM_SUPPORT, EnvSpec, Spec, SpecError

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class Components:
    """Everything a session runs. Members are plain TorchRL / torch objects usable outside zoo."""

    spec: Spec
    seed: int
    device: torch.device
    env: EnvBase
    eval_env: EnvBase
    agent: Agent
    collector: BaseCollector  # Collector, MultiSyncCollector / MultiAsyncCollector or RayCollector (env.collector)

    @property
    def policy(self):
        return self.agent.policy

    @property
    def actor(self):
        return self.agent.actor

    @property
    def loss(self):
        return self.agent.loss

    @property
    def buffer(self):
        return self.agent.buffer

    @property
    def optimizers(self):
        return self.agent.optimizers

    @property
    def target_updater(self):
        return self.agent.target_updater

    @property
    def exploration(self):
        """The policy's exploration module (or None): `step(frames)` after each collected batch anneals it."""
        return self.agent.exploration

    @property
    def schedules(self):
        return self.agent.schedules

    def push_policy_weights(self) -> None:
        """After an update: the collector's worker processes act with the new weights (and exploration state);
        with `meta.distributed: shared` they already do (shared memory), and nothing is sent."""
        if self.spec.meta.distributed == "shared":
            return
        if self.spec.meta.distributed == "synced":  # into the workers' copy (the learner's policy is apart)
            self.collector.update_policy_weights_(TensorDict.from_module(self.agent.policy).data)
        elif self.spec.env.collector == "ray":
            from zoo.distributed import push_ray_weights  # imported already: make_collector built the collector

            push_ray_weights(self.collector, self.agent.policy)
        elif not isinstance(self.collector, Collector):
            self.collector.update_policy_weights_()

    def close(self) -> None:
        """Shut the collector down: its worker processes, and the weight-sync queues TorchRL 0.14 would otherwise
        close from a garbage-collection finalizer, which can deadlock the process (it starts a queue feeder thread
        inside `__del__`)."""
        self.collector.shutdown()
        schemes = getattr(self.collector, "_weight_sync_schemes", None) or {}  # no public accessor in 0.14
        for scheme in schemes.values():
            scheme.shutdown()

    def sync_eval_env(self) -> None:
        """Give the eval env the train env's current (frozen) normalization statistics."""
        sync_eval_env(self.env, self.eval_env)

    def describe(self) -> str:
        """A readable summary of the graph, one component per line (for --dry-run)."""
        a, s = self.agent, self.spec
        lines = [
            f"spec        {s.name}: {s.agent.algorithm.name} on {s.env.name}, {s.env.max_frame} frames, "
            f"seed {self.seed}",
            f"env         {s.env.num_envs} x {s.env.name} -> {type(self.env).__name__}, "
            f"batch {tuple(self.env.batch_size)}",
            f"eval_env    {self.eval_env.batch_size[0]} x {s.env.name}, greedy, {s.meta.eval_episodes} episodes "
            f"every {s.meta.eval_frequency} frames",
            f"policy      {_oneline(a.policy)}",
            f"actor       {_oneline(a.actor)}",
            f"collector   {type(self.collector).__name__}(frames_per_batch={a.frames_per_batch}, "
            f"init_random_frames={a.init_random_frames}"
            + (f", {s.env.num_workers} workers x {s.env.num_envs // s.env.num_workers} envs)"
               if s.env.collector != "sync" else ")")
            + (f", meta.distributed {s.meta.distributed}" if s.meta.distributed else ""),
            f"buffer      {_buffer(a.buffer)}",
            f"loss        {_loss(a)}",
            f"target      {_target(a)}",
        ]
        for name, opt in a.optimizers.items():
            group = opt.param_groups[0]
            lines.append(f"optimizer   {name}: {type(opt).__name__}(lr={group['lr']:g})")
        lr = s.agent.net.lr_scheduler_spec
        lines.append(f"lr_schedule {lr.name if lr else 'constant'}")
        if a.exploration is not None:
            lines.append(f"exploration {type(a.exploration).__name__}: {a.exploration.schedule}")
        for name, schedule in a.schedules.items():
            lines.append(f"schedule    {name}: {schedule}")
        lines.append(f"device      {self.device}")
        return "\n".join(lines)


def _oneline(obj) -> str:
    if obj is None:
        return "none"
    if hasattr(obj, "module") and isinstance(getattr(obj, "module", None), torch.nn.ModuleList):
        return " -> ".join(type(m).__name__ for m in obj.module)
    text = repr(obj).split("\n")[0]
    return text if len(text) < 100 else type(obj).__name__


def _loss(agent: Agent) -> str:
    if agent.loss is None:
        return "none (nothing is learned)"
    return f"{type(agent.loss).__name__}, {sum(p.numel() for p in agent.loss.parameters())} parameters"


def _buffer(buffer) -> str:
    if buffer is None:
        return "none (on-policy batches)"
    storage, sampler = buffer._storage, buffer._sampler
    return (f"{type(buffer).__name__}({type(storage).__name__}(max_size={storage.max_size}), "
            f"{type(sampler).__name__}, batch_size={buffer._batch_size})")


def _target(agent: Agent) -> str:
    updater = agent.target_updater
    if updater is None:
        return "none"
    interval = getattr(updater, "value_network_update_interval", None)
    if interval is not None:
        return f"{type(updater).__name__}(every {interval} gradient steps)"
    return f"{type(updater).__name__}(eps={float(getattr(updater, 'eps', 0)):.4f})"


def resolve_device(device: str, collector: str = "sync") -> torch.device:
    """`auto` picks CUDA when present, and the CPU for a multi-process collector (its workers act with CPU copies
    of the policy, which `validate` requires)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and collector == "sync" else "cpu")
    return torch.device(device)


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for torch, numpy, the train env and the eval env, derived from one root seed."""
    torch_seed, numpy_seed, env_seed, eval_seed = np.random.SeedSequence(seed).generate_state(4)
    return {"torch": int(torch_seed), "numpy": int(numpy_seed), "env": int(env_seed), "eval_env": int(eval_seed)}


def seed_everything(seed: int) -> dict[str, int]:
    """Seed python, numpy and torch from the root seed; returns the derived seeds."""
    seeds = derive_seeds(seed)
    random.seed(seeds["numpy"])
    np.random.seed(seeds["numpy"])
    torch.manual_seed(seeds["torch"])
    return seeds


def make_collector(env: EnvBase, agent: Agent, total_frames: int = -1, init_random_frames: int = 0, *,
                   env_spec: EnvSpec | None = None, seed: int = 0, gamma: float = 0.99,
                   distributed: bool | str = False) -> BaseCollector:
    """The collector of `agent.policy`, batches of `agent.frames_per_batch` frames: TorchRL's `Collector` on `env`,
    or with `env_spec.collector` multi_sync / multi_async its multi-process collectors, whose workers each build
    `env_spec.num_envs / num_workers` copies of the env (`env` then only gave the agent its specs), or with `ray`
    TorchRL's RayCollector, whose Ray actors do the same (zoo.distributed).

    Either way the learner sees batches of the same shape `[num_envs, time]` (multi_sync joins the workers'
    `[workers, copies, time]`; a multi_async worker's `[copies, workers * time]` is cut into its `workers`
    consecutive time chunks, `[copies * workers, time]`), so a spec trains with the same hyperparameters whichever
    collector steps it, and returns bootstrap at the same horizon (an n-step return spans n steps, GAE
    time_horizon). Worker seeds derive from `seed` (the env's). `distributed` (`meta.distributed`, multi_async only)
    picks how its workers see the weights (see this module's docstring). A recurrent policy's primer (which `build`
    puts on `env`) goes on every worker's env too, so the workers carry its hidden state."""
    if env_spec is None or env_spec.collector == "sync":
        return Collector(
            env, agent.policy, frames_per_batch=agent.frames_per_batch, total_frames=total_frames,
            init_random_frames=init_random_frames, auto_register_policy_transforms=False,
            track_traj_ids=False,  # no zoo learner reads ("collector", "traj_ids"), and tracking them costs per step
            device=env.device,  # one device for env, policy and storage: the collector then casts nothing per step
        )
    workers, primer = env_spec.num_workers, get_primers_from_module(agent.policy, warn=False)
    env_fns = [partial(worker_env, env_spec, worker_seed, env_spec.num_envs // workers, gamma, primer)
               for worker_seed in np.random.SeedSequence(seed).generate_state(workers)]
    options = {"frames_per_batch": agent.frames_per_batch, "total_frames": total_frames,
               "init_random_frames": init_random_frames, "auto_register_policy_transforms": False,
               "device": env.device, "init_fn": worker_setup}
    if env_spec.collector == "multi_sync":
        return MultiSyncCollector(env_fns, agent.policy, cat_results="stack", postproc=join_workers, **options)
    if env_spec.collector == "ray":
        from zoo.distributed import make_ray_collector  # only ray runs pay for importing TorchRL's distributed

        return make_ray_collector(env_fns, agent.policy, address=env_spec.ray_address, postproc=join_workers,
                                  frames_per_batch=agent.frames_per_batch, total_frames=total_frames,
                                  init_random_frames=init_random_frames)
    # synced: the workers' weights are a copy that the learner's optimizer steps do not reach (push_policy_weights)
    policy = copy.deepcopy(agent.policy) if distributed == "synced" else agent.policy
    time = agent.frames_per_batch // env_spec.num_envs
    return MultiAsyncCollector(env_fns, policy, postproc=partial(split_rollout, time), **options)


def worker_env(env_spec: EnvSpec, seed: int, num_envs: int, gamma: float, primer: Transform | None = None) -> EnvBase:
    """A collector worker's env (called in the worker process): its torch and numpy RNGs (the policy's draws) and
    its env copies seeded from the worker's own seed; a recurrent policy's `primer` carries its hidden state."""
    torch_seed, numpy_seed, env_seed = np.random.SeedSequence(int(seed)).generate_state(3)
    torch.manual_seed(int(torch_seed))
    np.random.seed(int(numpy_seed))
    env = make_env(env_spec, int(env_seed), num_envs=num_envs, gamma=gamma)
    return env if primer is None else env.append_transform(primer.clone())


def worker_setup() -> None:
    """Collector workers leave SIGINT to the learner process, which checkpoints, then shuts them down (a terminal's
    Ctrl-C reaches the whole process group: a worker dying of it would lose the batch in flight). SIGTERM keeps
    its default: TorchRL's shutdown terminates a worker that does not stop when asked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":  # die with the learner, even when it is killed with SIGKILL: no orphan workers
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def split_rollout(time: int, data: TensorDictBase) -> TensorDictBase:
    """A multi_async worker's `[copies, workers * time]` batch as `[copies * workers, time]`: each row a `time`-step
    chunk of one env copy, rows of a copy consecutive (so a flattened batch keeps each copy's steps in order). An
    estimator bootstraps each row from its last step's `next` value, as it does at the end of a sync rollout."""
    return data.reshape(-1, time)


def join_workers(data: TensorDictBase) -> TensorDictBase:
    """MultiSyncCollector's `[workers, copies, time]` batch as `[workers * copies, time]`, a vector env's layout."""
    return data.reshape(-1, data.shape[-1])


def build(spec: Spec, seed: int | None = None, start_frame: int = 0, env: EnvBase | None = None) -> Components:
    """Build the component graph of one session. `seed` defaults to `spec.meta.seed`.

    `env` (a TorchRL env of the spec's task) replaces the train env zoo would make: the policy, actor and loss
    are then built for its specs, so their actions follow its action encoding (integer or one-hot); the eval
    env is zoo's, with the same encoding.
    """
    seed = spec.meta.seed if seed is None else seed
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**31)
    if spec.meta.num_threads is not None:
        torch.set_num_threads(spec.meta.num_threads)
    seeds = seed_everything(seed)
    device = resolve_device(spec.meta.device, spec.env.collector)
    gamma = spec.agent.algorithm.gamma
    # envs hand their outputs over on `device` (Atari frames stay uint8 until the net casts them there)
    if env is None:
        env = make_env(spec.env, seeds["env"], device=device, gamma=gamma)
    info, support = env_info(env), ALGORITHM_SUPPORT[spec.agent.algorithm.name]
    one_hot = info["one_hot"]
    if info["action_kind"] in ("MultiDiscrete", "MultiBinary") and not support.multi_actions:
        takers = ", ".join(sorted(name for name, s in ALGORITHM_SUPPORT.items() if s.multi_actions))
        raise SpecError("agent.algorithm.name", f"{spec.agent.algorithm.name} does not act in {info['action_kind']} "
                        f"action spaces ({spec.env.name}); algorithms that do: {takers}")
    if one_hot and not support.one_hot_actions:
        raise SpecError("agent.algorithm.name", f"{spec.agent.algorithm.name} needs integer-coded discrete actions; "
                        "the env given has one-hot actions (build it with categorical_action_encoding=True, or "
                        "use zoo.make_env)")
    eval_env = make_env(spec.env, seeds["eval_env"], num_envs=spec.meta.eval_episodes, device=device, gamma=gamma,
                        evaluation=True, categorical_action_encoding=not one_hot)
    with device:  # parameters, buffers and target copies are created where they run
        agent = ALGORITHMS[spec.agent.algorithm.name].build(spec, env)
    # recurrent policies: the envs carry their hidden states (zeros at each reset) from step to step
    primer, eval_primer = (get_primers_from_module(module, warn=False) for module in (agent.policy, agent.actor))
    if primer is not None:
        env = env.append_transform(primer)
    if eval_primer is not None:
        eval_env = eval_env.append_transform(eval_primer)
    agent.normalizers = normalizers(env) or None
    fpb = agent.frames_per_batch
    # workers of a resumed run draw other episodes than the run's start did
    collector = make_collector(env, agent, total_frames=-(-max(spec.env.max_frame - start_frame, 1) // fpb) * fpb,
                               init_random_frames=-(-max(agent.init_random_frames - start_frame, 0) // fpb) * fpb,
                               env_spec=spec.env, seed=int(np.random.SeedSequence([seeds["env"], start_frame])
                                                           .generate_state(1)[0]), gamma=gamma,
                               distributed=spec.meta.distributed)
    return Components(spec=spec, seed=seed, device=device, env=env, eval_env=eval_env, agent=agent,
                      collector=collector)
