"""n-step returns: TorchRL's MultiStepTransform plus our end-of-window fix, checked by hand across a terminated
and a truncated episode end and across batch borders; the DQN target then discounts by gamma ** steps."""

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs import MultiStepTransform

from tests.conftest import SPECS
from tests.unit.test_dqn import perturb_target, torchrl_oracle
from zoo.components import build
from zoo.memory import NStepTransform
from zoo.spec import load_spec

GAMMA, N, T = 0.5, 3, 12
TERMINATED_AT, TRUNCATED_AT = 2, 5  # steps whose next state ends the episode


def episode_batch() -> TensorDict:
    """One env, 12 steps; observation at step t is [t], the next one [t + 1] (the terminal one at an end)."""
    flags = torch.zeros(1, T, 1, dtype=torch.bool)
    terminated, truncated = flags.clone(), flags.clone()
    terminated[0, TERMINATED_AT], truncated[0, TRUNCATED_AT] = True, True
    return TensorDict({
        "observation": torch.arange(T, dtype=torch.float32).view(1, T, 1),
        "action": torch.zeros(1, T, dtype=torch.long),
        "next": {"observation": torch.arange(1, T + 1, dtype=torch.float32).view(1, T, 1),
                 "reward": 2.0 ** torch.arange(T, dtype=torch.float32).view(1, T, 1),
                 "terminated": terminated, "truncated": truncated, "done": terminated | truncated},
    }, batch_size=[1, T])


def hand_targets(t: int) -> tuple[float, float, int, bool]:
    """(n-step reward, next observation, steps, terminated) for the window starting at step t, by hand."""
    end = min([t + N - 1] + [e for e in (TERMINATED_AT, TRUNCATED_AT) if e >= t])  # stop at the episode end
    reward = sum(GAMMA ** (k - t) * 2.0 ** k for k in range(t, end + 1))
    return reward, end + 1.0, end - t + 1, end == TERMINATED_AT


def test_torchrl_multistep_keeps_the_first_steps_terminated_flag():
    """Why NStepTransform exists: TorchRL's window to a termination says 'not terminated' at its start."""
    out = MultiStepTransform(N, GAMMA).inv(episode_batch())
    assert out["next", "observation"][0, 0].item() == TERMINATED_AT + 1  # looks at the terminal observation
    assert not out["next", "terminated"][0, 0].item()  # ...and would bootstrap from it


@pytest.mark.parametrize("split", [None, 5])
def test_nstep_windows_by_hand(split):
    transform, batch = NStepTransform(N, GAMMA), episode_batch()
    if split is None:
        out = transform.inv(batch)
    else:  # two collector batches: the transform carries the last frames over the border
        out = torch.cat([transform.inv(batch[:, :split]), transform.inv(batch[:, split:])], dim=1)
    assert out.shape == (1, T - N)  # the last n frames wait for their window to complete
    for t in range(T - N):
        reward, next_obs, steps, terminated = hand_targets(t)
        assert out["next", "reward"][0, t].item() == pytest.approx(reward), t
        assert out["next", "observation"][0, t].item() == next_obs, t
        assert out["steps_to_next_obs"][0, t].item() == steps, t
        assert out["next", "terminated"][0, t].item() == terminated, t
    assert "original_reward" not in out["next"]


@pytest.fixture
def nstep_agent():
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=[
        "agent.algorithm.n_step=3", f"agent.algorithm.gamma={GAMMA}", "env.num_envs=1",
        "agent.algorithm.training_start_step=100000"])
    agent = build(spec, seed=0).agent
    perturb_target(agent.loss)
    return agent


def test_td_target_uses_gamma_to_the_steps(nstep_agent):
    agent = nstep_agent
    batch = NStepTransform(N, GAMMA).inv(episode_batch().expand(1, T).clone()).reshape(-1)
    batch["observation"] = batch["observation"].expand(-1, 4).contiguous()  # CartPole-shaped observations
    batch["next", "observation"] = batch["next", "observation"].expand(-1, 4).contiguous()
    ours = agent.loss(batch)["loss"]
    errors = batch["td_error"]
    with torch.no_grad():
        q = agent.q_net(batch["observation"])[:, 0]
        next_value = agent.loss.target_net(batch["next", "observation"]).max(-1).values
    for t in range(T - N):
        reward, _, steps, terminated = hand_targets(t)
        target = reward + (0.0 if terminated else GAMMA ** steps * next_value[t].item())
        assert errors[t].item() == pytest.approx(abs(q[t].item() - target), rel=1e-5), t
    # TorchRL's DQNLoss reads steps_to_next_obs too
    reference = torchrl_oracle(agent.loss)(batch.exclude("td_error"))["loss"]
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def test_agent_stores_windowed_transitions(nstep_agent):
    agent, batch = nstep_agent, episode_batch()
    batch["observation"] = batch["observation"].expand(1, T, 4).contiguous()
    batch["next", "observation"] = batch["next", "observation"].expand(1, T, 4).contiguous()
    agent.update(batch[:, :6], frame=6)
    agent.update(batch[:, 6:], frame=12)
    stored = agent.buffer[:]
    assert len(agent.buffer) == T - N
    assert stored["steps_to_next_obs"].tolist() == [hand_targets(t)[2] for t in range(T - N)]
    assert stored["next", "terminated"].squeeze(-1).tolist() == [hand_targets(t)[3] for t in range(T - N)]
