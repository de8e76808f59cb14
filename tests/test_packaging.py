"""The two install paths agree: pip's dev extra and uv's dev group, pyproject.toml and the committed uv.lock."""

import os
import shutil
import subprocess
import tomllib

import pytest

from tests.conftest import ROOT


def test_dev_extra_and_dev_group_list_the_same_tools():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = project["project"]["optional-dependencies"]["dev"]
    group = project["dependency-groups"]["dev"]
    assert sorted(extra) == sorted(group), "keep [project.optional-dependencies] dev and [dependency-groups] dev equal"


def test_uv_lock_matches_pyproject():
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` sets UV to its own executable
    if uv is None:
        if os.environ.get("ZOO_REQUIRE_UV"):
            pytest.fail("ZOO_REQUIRE_UV is set but uv is not on PATH")
        pytest.skip("uv is not on PATH (CI runs `uv lock --check` as a step of its own)")
    # --offline: an up-to-date lock is checked from uv.lock and pyproject.toml alone, nothing is downloaded
    out = subprocess.run([uv, "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"uv.lock is stale: run `uv lock` and commit uv.lock\n{out.stderr[-2000:]}"
