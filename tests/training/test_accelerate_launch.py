"""`accelerate launch` with two CPU processes: KD training runs distributed and writes one model.

accelerate 1.15 starts several CPU processes without MPI through its torchrun launcher
(``--multi_gpu``); on a machine without GPUs the processes then train on CPU over gloo.
"""

import json
import os
import subprocess
import sys

import pytest

from domainkd.config import KDConfig, dump_config
from domainkd.paths import RunPaths


@pytest.mark.parametrize("loss", ["vanilla", "dskd"])
def test_offline_kd_trains_under_accelerate_launch_with_two_cpu_processes(tiny_config, taught, tiny_teacher, loss):
    tiny_config.train.kd = KDConfig(teacher=str(tiny_teacher), loss=loss, top_k=8)
    tiny_config.train.batch_size = 4
    taught(tiny_config)
    config_path = tiny_config.output_dir / "config.yaml"
    dump_config(tiny_config, config_path)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "domainkd.cli", "train", str(config_path),
    ]
    # CPU processes on any machine: on a one-GPU machine the second rank would ask for a GPU that is not there
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert finished.returncode == 0, finished.stderr[-3000:]

    paths = RunPaths(tiny_config.output_dir)
    summary = json.loads(paths.train_summary.read_text())
    examples = summary["examples"]
    assert summary["objective"] == "kd" and summary["steps"] == -(-examples // (2 * 4))  # two processes share each step
    assert (paths.model / "model.safetensors").is_file()
    meta = json.loads((paths.teacher_topk / "meta.json").read_text())
    assert meta["examples_done"] == examples  # recorded once, by the main process
