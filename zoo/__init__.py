"""zoo: deep RL algorithms assembled from TorchRL components, driven by SLM-style spec files.

The public names below load on first use (PEP 562), so `import zoo.spec` or `tools/train.py --help` do not
pay for importing torch, tensordict and TorchRL (several seconds); `from zoo import build` works as before.
"""

import importlib

__version__ = "0.6.0"

_EXPORTS = {"Agent": "zoo.agent", "Components": "zoo.components", "build": "zoo.components", "make_env": "zoo.envs",
            "Session": "zoo.session", "evaluate": "zoo.session", "Spec": "zoo.spec", "SpecError": "zoo.spec",
            "load_spec": "zoo.spec", "algos": "zoo.algos", "slm": "zoo.slm"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if name in ("algos", "slm") else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
