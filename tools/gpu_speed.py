"""GPU training throughput of the Atari specs: eager, `torch.compile` and CUDA graphs of the update.

    python tools/gpu_speed.py [--specs ppo_pong dqn_pong] [--frames 20000] [--json-out gpu.json]

For each spec, on `cuda`: uint8 frames stay uint8 from the env to the device (zoo's Atari env hands them over
on the spec's device; the nets cast them there), and three variants of the update run on the same collected
batches:
  eager     the agent's own `update` (as `tools/train.py` runs it);
  compile   the same with the loss's forward under `torch.compile` (`mode="max-autotune-no-cudagraphs"`);
  cudagraph the replayed gradient step (loss, backward, optimizer step) of the off-policy agents captured once
            by tensordict's `CudaGraphModule` and replayed on fixed-shape batches (optimizers switched to
            `capturable=True`); PPO's minibatch loop lives in its update and is reported as not captured. A
            graph replays Python decisions as captured (the hard target update's interval): a throughput
            figure, not a training recipe.
It prints collection and update frames per second of each variant and the update's share of a frame. It exits
with a one-line message where no CUDA device is present (CI and CPU machines).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tensordict.nn import CudaGraphModule

from zoo.components import build, make_collector
from zoo.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu_speed.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", nargs="+", default=["ppo_pong", "dqn_pong"])
    parser.add_argument("--frames", type=int, default=20000, help="frames per variant after warm-up")
    parser.add_argument("--variants", nargs="+", default=["eager", "compile", "cudagraph"])
    parser.add_argument("--json-out", type=Path)
    return parser.parse_args(argv)


def capturable(optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Optimizer steps inside a CUDA graph need their step counters on the device (`capturable=True`)."""
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["capturable"] = True
        for state in opt.state.values():
            if "step" in state and not state["step"].is_cuda:
                state["step"] = state["step"].cuda()


def graph_gradient_step(agent) -> None:
    """Replace the agent's replayed gradient step (loss, backward, optimizer step) with a CUDA-graph replay."""
    if not hasattr(agent, "gradient_step"):
        raise NotImplementedError(f"{type(agent).__name__} has no per-batch gradient step to capture (PPO's "
                                  "minibatch loop lives in its update)")
    capturable(agent.optimizers)
    step = agent.gradient_step
    graphed = CudaGraphModule(lambda batch: step(batch), warmup=3)
    agent.gradient_step = lambda batch: graphed(batch.clone())


def measure(spec_name: str, variant: str, frames: int) -> dict[str, float]:
    overrides = ["meta.device=cuda"] + (["meta.compile=true"] if variant == "compile" else [])
    spec = load_spec(ROOT / "specs" / f"{spec_name}.yaml", None, overrides)
    components = build(spec, seed=0)
    components.collector.shutdown()
    agent = components.agent
    if variant == "compile" and not spec.meta.compile:
        agent.loss.forward = torch.compile(agent.loss.forward, mode="max-autotune-no-cudagraphs")
    if variant == "cudagraph":
        graph_gradient_step(agent)
    collector = make_collector(components.env, agent)
    batches = iter(collector)
    frame = 10**9  # past any learning-start gate
    for _ in range(3):  # warm-up: allocations, compilation, graph capture
        agent.update(next(batches), frame)
    collect = update = 0.0
    done = 0
    while done < frames:
        tick = time.perf_counter()
        data = next(batches)
        torch.cuda.synchronize()
        tock = time.perf_counter()
        agent.update(data, frame)
        torch.cuda.synchronize()
        collect, update = collect + tock - tick, update + time.perf_counter() - tock
        done += data.numel()
    collector.shutdown()
    return {"spec": spec_name, "variant": variant, "frames": done, "fps": done / (collect + update),
            "collect_fps": done / collect, "update_fps": done / update, "update_share": update / (collect + update)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_speed.py: no CUDA device on this machine; run it where one is", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    rows = []
    for spec_name in args.specs:
        for variant in args.variants:
            try:
                row = measure(spec_name, variant, args.frames)
            except (NotImplementedError, RuntimeError) as err:  # report a variant that cannot run, go on
                print(f"{spec_name:10s} {variant:10s} failed: {type(err).__name__}: {str(err)[:200]}")
                continue
            rows.append(row)
            print(f"{spec_name:10s} {variant:10s} {row['fps']:9,.0f} frames/s (collect {row['collect_fps']:,.0f}, "
                  f"update {row['update_fps']:,.0f}, update share {row['update_share']:.0%})")
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
