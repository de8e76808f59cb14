"""Smoke tier: every spec in specs/ trains a few hundred frames through the CLI in dev mode."""

import pytest

from tests.conftest import SPECS, only_run_dir, read_metrics, run_cli
from zoo.spec import read_spec_file, spec_names

SMOKE_FRAMES = 300


def all_specs() -> list[tuple[str, str | None]]:
    cases = []
    for path in sorted(SPECS.glob("*.y*ml")) + sorted(SPECS.glob("*.json")):
        names = spec_names(read_spec_file(path))
        cases += [(path.name, name) for name in names] if names else [(path.name, None)]
    return cases


@pytest.mark.smoke
@pytest.mark.parametrize(("spec_file", "spec_name"), all_specs())
def test_spec_runs_in_dev_mode(tmp_path, spec_file, spec_name):
    args = [str(SPECS / spec_file)] + ([spec_name] if spec_name else []) + [
        "dev", "-s", f"env.max_frame={SMOKE_FRAMES}", "-s", "meta.eval_episodes=1"]
    result = run_cli(*args, data_dir=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run_dir(tmp_path)
    rows = read_metrics(run)
    assert rows and int(rows[-1]["frame"]) >= SMOKE_FRAMES
    assert rows[-1]["eval/return"] != ""
    for name in ("spec.yaml", "run.json", "ckpt/latest.pt", "learning_curve.png"):
        assert (run / name).exists(), name
