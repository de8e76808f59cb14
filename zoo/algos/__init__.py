"""Algorithm registry: `agent.algorithm.name` -> the module whose `build(spec, env)` returns an Agent."""

from types import ModuleType

from zoo.algos import dqn

ALGORITHMS: dict[str, ModuleType] = {name: module for module in (dqn,) for name in module.NAMES}
