"""Kill `domainkd teach` with SIGKILL mid-run; the rerun must lose and repeat no answer."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from domainkd import load_config, teach
from domainkd.io import read_jsonl
from domainkd.paths import RunPaths
from domainkd.teachers import answer_key
from tests.conftest import HANDBOOK
from tests.teachers.stores import answered_keys


@pytest.mark.skipif(not (HANDBOOK / "docs").is_dir(), reason="needs the shipped handbook")
def test_kill_then_rerun_loses_and_repeats_nothing(tmp_path, tiny_model, monkeypatch):
    config_path = tmp_path / "c.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(tmp_path / "run"),
                "teacher": {"model": str(tiny_model), "batch_size": 1, "max_new_tokens": 24},
                "data": {"documents": str(HANDBOOK / "docs"), "strategies": {"context_qa": {"paraphrases_per_question": 0}, "refusal": {}}},
                "eval": {"questions": str(HANDBOOK / "eval.jsonl")},  # a tiny random teacher writes no usable question
            }
        )
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "domainkd.cli"]
    assert subprocess.run([*command, "data", str(config_path)], env=environment, capture_output=True).returncode == 0
    store_path = RunPaths(tmp_path / "run").answer_store
    process = subprocess.Popen([*command, "teach", str(config_path)], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900  # a condition, not a timing: generous for a loaded machine
    while len(answered_keys(store_path)) < 5 and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = answered_keys(store_path)
    assert len(before) >= 5, "the teacher should have stored answers before the kill"

    import domainkd.teachers.hf as hf

    generated = []
    original = hf.HFTeacher.generate_stream  # the path `ask` takes with the hf teacher

    def recording(self, conversations, max_new_tokens=None, expect_json=False):
        settings = {**self.settings(), "max_new_tokens": max_new_tokens or self.config.max_new_tokens}
        settings = {**settings, "expect_json": True} if expect_json else settings
        for index, reply in original(self, conversations, max_new_tokens, expect_json=expect_json):
            generated.append(answer_key(self.identity, conversations[index], settings))
            yield index, reply

    monkeypatch.setattr(hf.HFTeacher, "generate_stream", recording)
    config = load_config(config_path)
    teach(config)
    after = answered_keys(store_path)

    assert not set(generated) & before, "an answer stored before the kill was asked for again"
    assert len(generated) == len(set(generated)), "a prompt was generated twice"
    assert after == before | set(generated), "every answer is in the store"
    total_prompts = sum(1 for _ in read_jsonl(RunPaths(tmp_path / "run").chunks))  # at least one per chunk
    assert len(after) >= total_prompts
    assert RunPaths(tmp_path / "run").train_set.is_file()
