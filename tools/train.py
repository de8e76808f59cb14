"""Train, resume or replay a spec: `python tools/train.py specs/dqn_cartpole.yaml [name] [mode] [-s k=v]`."""

import sys

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
