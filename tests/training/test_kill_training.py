"""SIGKILL a training subprocess mid-run, also mid-checkpoint, and rerun: the same final model as a run never stopped."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import torch
import yaml
from safetensors.torch import load_file

from domainkd import prepare_data, teach, train
from domainkd.io import atomic_dir
from domainkd.paths import RunPaths
from domainkd.training.sft import newest_complete_checkpoint
from tests.conftest import REPO


def _complete(folder):
    """Checkpoint folders whose trainer_state.json (written last) is there and parses."""
    done = []
    for path in folder.glob("checkpoint-*"):
        try:
            json.loads((path / "trainer_state.json").read_text())
            done.append(path)
        except (OSError, ValueError):
            pass
    return done


def _newest(paths):
    """The step of the newest complete checkpoint (0 before any); training keeps the newest two."""
    return max((int(path.name.split("-")[1]) for path in _complete(paths.checkpoints)), default=0)


def _weights(paths):
    return load_file(paths.model / "model.safetensors")


def test_a_kill_mid_run_and_mid_save_resumes_to_the_same_final_model(tiny_config, tmp_path):
    tiny_config.train.epochs = 6
    tiny_config.train.batch_size = 2
    tiny_config.train.save_steps = 1
    prepare_data(tiny_config)
    teach(tiny_config)
    reference = train(tiny_config)  # uninterrupted
    paths = RunPaths(tiny_config.output_dir)
    expected = _weights(paths)
    assert reference["steps"] >= 8

    for stale in (paths.model, paths.train_summary, paths.checkpoints):
        subprocess.run(["rm", "-rf", str(stale)], check=True)
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config.model_dump(mode="json")))
    job = subprocess.Popen(
        [sys.executable, "-m", "domainkd.cli", "train", str(config_path)], cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 900  # a condition; generous for a loaded machine
        while _newest(paths) < 3 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        job.send_signal(signal.SIGKILL)
        _, stderr = job.communicate()
    assert job.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    step = _newest(paths)
    assert 3 <= step < reference["steps"], "killed mid-run"
    assert not paths.model.exists()

    # and as if the kill had come while the newest checkpoint was being written: its state file cut short
    newest = paths.checkpoints / f"checkpoint-{step}"
    state = newest / "trainer_state.json"
    state.write_text(state.read_text()[:40])
    assert newest_complete_checkpoint(paths.checkpoints) != str(newest)
    assert not newest.exists(), "the half-written checkpoint is removed so it cannot be picked again"

    resumed = train(tiny_config)
    assert resumed["steps"] == reference["steps"]
    got = _weights(paths)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_newest_complete_checkpoint_skips_folders_without_their_state(tmp_path):
    for step, state in ((2, {"global_step": 2}), (4, {"global_step": 4}), (6, None), (8, "cut")):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
        if state == "cut":
            (folder / "trainer_state.json").write_text('{"global_st')
        elif state:
            (folder / "trainer_state.json").write_text(json.dumps(state))
    assert newest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert newest_complete_checkpoint(tmp_path / "none") is None


def test_replacing_a_model_folder_never_leaves_it_missing(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as folder:
        (folder / "weights").write_text("0")
    missing, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if not (target / "weights").is_file():
                missing.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for version in range(1, 60):
            with atomic_dir(target) as folder:
                (folder / "weights").write_text(str(version))
                (folder / "padding").write_bytes(b"x" * 200_000)  # a removal that takes a moment
    finally:
        stop.set()
        watcher.join()
    assert not missing, f"the folder was missing {len(missing)} times while it was replaced"
    assert (target / "weights").read_text() == "59"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]
