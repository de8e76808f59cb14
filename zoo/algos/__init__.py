"""Algorithm registry: `agent.algorithm.name` -> the module whose `build(spec, env)` returns an Agent."""

from types import ModuleType

from zoo.algos import a2c, crossq, dqn, ppo, random, reinforce, sac, sarsa, sil, td3

ALGORITHMS: dict[str, ModuleType] = {
    name: module for module in (dqn, sarsa, sac, td3, crossq, reinforce, a2c, ppo, sil, random)
    for name in module.NAMES}
