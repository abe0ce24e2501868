"""Fixtures shared by the serving and export tests."""

import shutil

import pytest

from domainkd.config import dump_config
from domainkd.paths import RunPaths


@pytest.fixture()
def trained_run(tiny_config, tiny_model):
    """A run as `domainkd train` (method full) leaves it: config.yaml and train/model."""
    paths = RunPaths(tiny_config.output_dir)
    dump_config(tiny_config, paths.config)
    shutil.copytree(tiny_model, paths.model)
    return paths.root
