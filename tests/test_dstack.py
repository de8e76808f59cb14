"""The .dstack/ tasks, parsed by dstack's own configuration parser (the optional `cloud` extra).

Checked as dstack would run them: the repository checked out as the working directory, a network volume for run
directories (which the commands write to), retry on interruption, a time limit and resources on every task, and a
multi-node task. Skipped without dstack unless ZOO_REQUIRE_DSTACK is set (CI sets it)."""

import os
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

TASKS = sorted((ROOT / ".dstack").glob("*.dstack.yml"))


@pytest.fixture(scope="module")
def configurations():
    try:
        from dstack._internal.core.models.configurations import parse_apply_configuration
    except ImportError:
        if os.environ.get("ZOO_REQUIRE_DSTACK"):
            pytest.fail("ZOO_REQUIRE_DSTACK is set but dstack is not installed (pip install -e '.[cloud]')")
        pytest.skip("dstack is not installed (pip install -e '.[cloud]')")
    return {path.name: parse_apply_configuration(yaml.safe_load(path.read_text())) for path in TASKS}


def tasks(configurations):
    return {name: conf for name, conf in configurations.items() if conf.type == "task"}


def test_every_task_checks_out_the_repository(configurations):
    assert tasks(configurations)
    for name, task in tasks(configurations).items():
        (repo,) = task.repos
        assert (ROOT / ".dstack" / repo.local_path).resolve() == ROOT, name  # relative to the config's folder
        assert repo.path == "."
        assert any(re.search(r'pip install .*-e "?\.', command) for command in task.commands), name  # the checkout


def test_every_task_keeps_its_runs_on_the_volume_and_retries(configurations):
    volume_names = {conf.name for conf in configurations.values() if conf.type == "volume"}
    for name, task in tasks(configurations).items():
        (mount,) = task.volumes
        assert mount.name in volume_names, name  # the volume configuration the README creates
        assert any(f"--data-dir {mount.path}/" in command or f"DATA={mount.path}/" in command
                   for command in task.commands), name
        assert "interruption" in [event.value for event in task.retry.on_events], name
        assert task.max_duration and task.max_duration > 0, name
        assert task.resources.cpu is not None and task.resources.memory is not None, name


def test_a_retried_training_task_resumes(configurations):
    for name in ("train-cpu.dstack.yml", "train-gpu.dstack.yml"):
        script = "\n".join(configurations[name].commands)
        assert "train@latest" in script and "$DSTACK_RUN_NAME" in script, name


def test_there_is_a_multi_node_task(configurations):
    assert any((task.nodes or 1) > 1 for task in tasks(configurations).values())


def test_readme_applies_the_tasks_from_the_repository_root(configurations):
    readme = Path(ROOT / "README.md").read_text()
    for name in configurations:
        assert f"dstack apply -f .dstack/{name}" in readme, name
