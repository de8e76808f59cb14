"""zoo: deep RL algorithms assembled from TorchRL components, driven by SLM-style spec files."""

from zoo import algos, slm  # register every algorithm's spec dataclass, and SLM-Lab's spec format
from zoo.agent import Agent
from zoo.components import Components, build
from zoo.envs import make_env
from zoo.session import Session, evaluate
from zoo.spec import Spec, SpecError, load_spec

__all__ = ["Agent", "Components", "Session", "Spec", "SpecError", "algos", "build", "evaluate", "load_spec",
           "make_env", "slm"]
__version__ = "0.3.0"
