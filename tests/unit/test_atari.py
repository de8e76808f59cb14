"""Atari: preprocessing shapes and dtypes, raw scores vs clipped rewards, end of life, frame-stacking replay."""

import numpy as np
import pytest
import torch

from zoo.atari import LIFE_DONE_KEY, LIFE_TERMINATED_KEY
from zoo.envs import learning_keys, make_env
from zoo.memory import FrameStackReplay, make_replay_buffer
from zoo.spec import EnvSpec, MemorySpec, SpecError


def atari(name: str, num_envs: int = 2, **fields) -> EnvSpec:
    return EnvSpec(name=name, num_envs=num_envs, max_frame=1000, **fields)


def constant_action_rollout(env, steps: int, action: int = 0):
    """Steps with one fixed action (through step_and_maybe_reset, as the collector does); returns `[N, T]`."""
    td, frames = env.reset(), []
    for _ in range(steps):
        td["action"] = torch.full(env.batch_size, action, dtype=torch.int64)
        td, next_td = env.step_and_maybe_reset(td)
        frames.append(td)
        td = next_td
    return torch.stack(frames, dim=1)


@pytest.fixture(scope="module")
def pong():
    """3 Pong games truncated at 40 steps, and 100 steps of random play in them."""
    env = make_env(atari("ALE/Pong-v5", num_envs=3, max_t=40), seed=0)
    return env, env.rollout(100, break_when_any_done=False)


def test_transform_chain_shapes_and_dtypes(pong):
    env, data = pong
    assert data["observation"].shape == (3, 100, 4, 84, 84)
    assert data["observation"].dtype == torch.uint8
    assert data["next", "observation"].dtype == torch.uint8
    assert data["action"].dtype == torch.int64 and data["action"].shape == (3, 100)
    assert data["next", "reward"].dtype == torch.float32
    assert data["next", LIFE_TERMINATED_KEY].dtype == torch.bool
    # the stack shifts by one frame per step: frames 0..2 of the next observation are frames 1..3 of this one
    assert torch.equal(data["next", "observation"][:, :, :3], data["observation"][:, :, 1:])
    assert learning_keys(env) == (LIFE_DONE_KEY, LIFE_TERMINATED_KEY)


def test_reward_clipped_for_learning_after_the_raw_score_is_recorded():
    torch.manual_seed(0)  # the rollout's random actions: whatever tests ran before, some alien gets shot
    env = make_env(atari("ALE/SpaceInvaders-v5", num_envs=1), seed=1)
    data = env.rollout(300, break_when_any_done=False)[0]  # rewards of 5 to 30 per alien
    score, done = data["next", "episode_reward"].squeeze(-1), data["next", "done"].squeeze(-1)
    previous = torch.cat([torch.zeros(1), (score * ~done)[:-1]])  # the score restarts after a game over
    raw = score - previous
    clipped = data["next", "reward"].squeeze(-1)
    assert raw.max() > 1, "no large reward in 300 steps: pick a longer rollout"
    assert torch.equal(clipped, raw.clamp(-1, 1))


def test_lost_life_ends_learning_episode_not_the_game():
    env = make_env(atari("ALE/Breakout-v5", num_envs=1), seed=0)
    data = constant_action_rollout(env, 400)[0]  # NOOP: each ball (launched by FIRE) is lost, 5 lives
    lives, next_lives = data["lives"], data["next", "lives"]
    done = data["next", "done"].squeeze(-1)
    life_lost = (next_lives < lives) | data["next", "terminated"].squeeze(-1)
    assert torch.equal(data["next", LIFE_TERMINATED_KEY].squeeze(-1), life_lost)
    assert torch.equal(data["next", LIFE_DONE_KEY].squeeze(-1), life_lost | done)
    first_game = slice(0, int(done.nonzero()[0]) + 1)
    assert int(life_lost[first_game].sum()) == 5 and int(done[first_game].sum()) == 1
    # the game's step count runs over all its lives
    steps = data["next", "step_count"].squeeze(-1)[first_game]
    assert torch.equal(steps, torch.arange(1, steps.numel() + 1))


def test_without_episode_life_learners_use_the_env_flags():
    env = make_env(atari("ALE/Pong-v5", episode_life=False, clip_reward=False), seed=0)
    assert learning_keys(env) == ("done", "terminated")
    assert LIFE_TERMINATED_KEY not in env.observation_spec


def test_atari_spec_errors_name_the_field():
    with pytest.raises(SpecError, match="env.name"):
        make_env(atari("ALE/NotAGame-v5"), seed=0)
    with pytest.raises(SpecError, match="env.kwargs.reward_clipping"):
        make_env(atari("ALE/Pong-v5", kwargs={"reward_clipping": True}), seed=0)


@pytest.mark.parametrize("memory_name", ["Replay", "PrioritizedReplay"])
def test_frame_stack_replay_rebuilds_the_collected_stacks(pong, memory_name):
    env, data = pong
    num_envs, steps = data.shape
    assert data["next", "truncated"].any()  # episode ends (and their final frames) are in the data
    buffer = make_replay_buffer(MemorySpec(name=memory_name, max_size=200, batch_size=64), env=env)
    assert isinstance(buffer, FrameStackReplay)
    for chunk in data.split(7, dim=1):  # env-major flattened batches, as DQN stores them
        buffer.extend(chunk.reshape(-1))
    capacity = buffer._storage.max_size  # 201 rows for 300 transitions: the ring has wrapped
    written = num_envs * steps
    for _ in range(4):
        batch = buffer.sample(64)
        for row, index in enumerate(batch["index"].tolist()):
            write = written - 1 - (written - 1 - index) % capacity  # last write that landed on this row
            t, e = divmod(write, num_envs)
            assert torch.equal(batch["observation"][row], data["observation"][e, t])
            assert torch.equal(batch["next", "observation"][row], data["next", "observation"][e, t])
            assert batch["action"][row] == data["action"][e, t]
            assert batch["next", "done"][row] == data["next", "done"][e, t]
    batch, info = buffer.sample(8, return_info=True)
    assert torch.equal(info["index"], batch["index"])
    assert ("priority_weight" in info) == (memory_name == "PrioritizedReplay")


def assert_same_replay(a: FrameStackReplay, b: FrameStackReplay) -> None:
    """Same rows, counters and final frames (everything sampling and extending read)."""
    assert len(a) == len(b)
    assert (a._storage._storage[: len(a)] == b._storage._storage[: len(b)]).all()
    assert a._writer.state_dict() == b._writer.state_dict()
    assert a.next_step == b.next_step and torch.equal(a.episode_step, b.episode_step)
    assert a.final_frames.keys() == b.final_frames.keys()
    assert all(torch.equal(a.final_frames[i], b.final_frames[i]) for i in a.final_frames)
    assert torch.equal(a.last_rows, b.last_rows) and torch.equal(a.last_frame, b.last_frame)


@pytest.mark.parametrize("memory_name", ["Replay", "PrioritizedReplay"])
def test_frame_stack_replay_saved_and_loaded_continues_the_same(pong, memory_name, tmp_path):
    """dumps -> loads into a fresh buffer (as a checkpoint with meta.ckpt_replay): equal state, equal samples
    with the same seed, and both continue identically (and correctly) when extended further."""
    from zoo.checkpoint import dump_replay, load_replay

    env, data = pong
    memory = MemorySpec(name=memory_name, max_size=200, batch_size=64)
    saved, loaded = make_replay_buffer(memory, env=env), make_replay_buffer(memory, env=env)
    for chunk in data[:, :60].split(7, dim=1):
        saved.extend(chunk.reshape(-1))
    assert saved.final_frames and saved.episode_step.gt(0).all()  # finished episodes and ones in flight
    dump_replay(saved, tmp_path / "replay")
    state = torch.load(tmp_path / "replay" / "frame_stack.pt", weights_only=True)
    assert int(state["next_step"]) == 60
    load_replay(loaded, tmp_path / "replay")
    assert_same_replay(saved, loaded)
    for chunk in [None, *data[:, 60:].split(9, dim=1)]:
        if chunk is not None:
            index = saved.extend(chunk.reshape(-1))
            assert torch.equal(index, loaded.extend(chunk.reshape(-1)))
        samples = []
        for buffer in (saved, loaded):
            torch.manual_seed(3)
            np.random.seed(3)  # PrioritizedSampler draws from numpy
            samples.append(buffer.sample(64))
        assert (samples[0] == samples[1]).all()
    assert_same_replay(saved, loaded)
    capacity, written = saved._storage.max_size, data.numel()
    batch = loaded.sample(64)  # the loaded buffer's stacks are still the collected ones
    for row, index in enumerate(batch["index"].tolist()):
        t, e = divmod(written - 1 - (written - 1 - index) % capacity, data.shape[0])
        assert torch.equal(batch["observation"][row], data["observation"][e, t])
        assert torch.equal(batch["next", "observation"][row], data["next", "observation"][e, t])
    state_dict = saved.state_dict()  # the in-memory form carries the same state
    fresh = make_replay_buffer(memory, env=env)
    fresh.load_state_dict(state_dict)
    assert_same_replay(saved, fresh)


def test_frame_stack_replay_ends_episodes_cut_between_batches(pong):
    """Envs reset outside the batches (a resume whose env state could not be saved): the episodes in flight
    end as truncations with their real next frame, and the new episodes' stacks start from zeros."""
    env, data = pong
    buffer = make_replay_buffer(MemorySpec(name="Replay", max_size=1000, batch_size=64), env=env)
    first = data[:, :30]
    assert not first["next", "done"][:, -1].any()
    buffer.extend(first.reshape(-1))
    fresh = env.rollout(20, break_when_any_done=False)  # starts from a reset, not from `first`'s end
    buffer.extend(fresh.reshape(-1))
    assert buffer.episode_step.tolist() == [20] * 3
    batch = buffer.sample(1000)
    n = data.shape[0]
    for row, index in enumerate(batch["index"].tolist()):
        t, e = divmod(index, n)
        source, t = (first, t) if t < 30 else (fresh, t - 30)
        assert torch.equal(batch["observation"][row], source["observation"][e, t])
        assert torch.equal(batch["next", "observation"][row], source["next", "observation"][e, t])
        assert batch["next", "done"][row] == (source["next", "done"][e, t] or source is first and t == 29)
    assert set(batch["index"][batch["next", "done"].squeeze(-1)].tolist()) >= {29 * n + e for e in range(n)}
