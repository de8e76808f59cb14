"""The best return VizDoom Basic allows, per episode and on average over its random monster spawns.

    python tools/vizdoom_basic_best.py [--episodes 100] [--max-strafe 80]

basic.cfg and the scenario's script pay +106 for the kill, -5 per shot and -1 per tic (living reward), and
the first hit kills: no episode can return more than 100 (one shot on the first tic). The monster spawns at a
random place along the far wall, so the agent first strafes to it. For each seeded episode this searches
every plan "strafe left or right for k tics (frame skip 1), then shoot until the episode ends" and keeps the
best return; their mean over the episodes is the target a learner is compared with (BENCHMARK.md, VizDoom).
"""

import argparse
import os

import numpy as np
import vizdoom as vzd

LEFT, RIGHT, SHOOT = [1, 0, 0], [0, 1, 0], [0, 0, 1]  # basic.cfg's buttons: MOVE_LEFT, MOVE_RIGHT, ATTACK


def best_return(game: vzd.DoomGame, seed: int, max_strafe: int) -> float:
    """The best strafe-then-shoot return of the episode that `seed` spawns."""
    best = -np.inf
    for move in (LEFT, RIGHT):
        for tics in range(max_strafe):
            game.set_seed(seed)
            game.new_episode()
            for _ in range(tics):
                if game.is_episode_finished():
                    break
                game.make_action(move)
            while not game.is_episode_finished():
                game.make_action(SHOOT)
            total = game.get_total_reward()
            best = max(best, total)
            if best > 0 and total < best - 40:  # strafed past the monster: longer strafes only lose more
                break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100, help="seeded episodes (seeds 0..N-1)")
    parser.add_argument("--max-strafe", type=int, default=80, help="longest strafe searched, in tics")
    args = parser.parse_args()
    game = vzd.DoomGame()
    game.load_config(os.path.join(vzd.scenarios_path, "basic.cfg"))
    game.set_window_visible(False)
    game.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
    game.init()
    best = np.array([best_return(game, seed, args.max_strafe) for seed in range(args.episodes)])
    print(f"VizDoom Basic, {args.episodes} episodes: best return mean {best.mean():.2f} (min {best.min():.0f}, "
          f"max {best.max():.0f}); within 15%: >= {0.85 * best.mean():.1f}")
    game.close()


if __name__ == "__main__":
    main()
