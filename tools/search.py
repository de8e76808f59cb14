"""Optuna search over a spec's `search:` block: `python tools/search.py specs/ppo_cartpole.yaml [name] [options]`."""

import sys

from zoo.search import main

if __name__ == "__main__":
    sys.exit(main())
