import json
import logging
import sqlite3

import pytest
import torch

from domainkd.config import TeacherConfig
from domainkd.models import load_tokenizer, render_prompt
from domainkd.teachers import AnswerStore, ask, build_teacher
from domainkd.teachers.hf import teacher_dtype


def test_the_hf_teacher_reports_prompt_and_completion_tokens(tiny_model, tmp_path):
    teacher = build_teacher(TeacherConfig(model=str(tiny_model), batch_size=2, max_new_tokens=6))
    conversations = [[{"role": "user", "content": text}] for text in ("How many days of leave?", "Who issues permits?")]
    with AnswerStore(tmp_path / "s.sqlite") as store:
        answers = ask(teacher, conversations, store)
        stats = store.stats()
    tokenizer = load_tokenizer(tiny_model)

    def count(text):
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    with sqlite3.connect(tmp_path / "s.sqlite") as connection:
        stored = {json.loads(prompt)[0]["content"]: tokens for prompt, tokens in connection.execute(
            "SELECT prompt, prompt_tokens FROM answers"
        )}
    assert stored == {c[0]["content"]: count(render_prompt(tokenizer, c)) for c in conversations}
    assert stats["prompt_tokens"] == sum(stored.values())
    assert stats["completion_tokens"] == sum(count(answer) for answer in answers) <= 2 * 6


def test_a_bfloat16_teacher_loads_in_bf16_and_keys_its_answers_apart_from_float32(tiny_model, tmp_path):
    conversations = [[{"role": "user", "content": "How many days of leave?"}]]
    settings = dict(model=str(tiny_model), batch_size=2, max_new_tokens=4)
    fp32, bf16 = (build_teacher(TeacherConfig(**settings, dtype=dtype)) for dtype in ("float32", "bfloat16"))
    assert fp32.settings() == {"max_new_tokens": 4, "temperature": 0.0}  # the keys of stores older than the setting
    assert bf16.settings() == {"max_new_tokens": 4, "temperature": 0.0, "dtype": "bfloat16"}
    with AnswerStore(tmp_path / "s.sqlite") as store:
        ask(fp32, conversations, store)
        answers = ask(bf16, conversations, store)  # not served from the float32 answer
        assert store.stats()["answered"] == 2
    assert next(bf16._model.parameters()).dtype == torch.bfloat16
    assert len(answers) == 1 and isinstance(answers[0], str)
    with sqlite3.connect(tmp_path / "s.sqlite") as connection:
        stored = sorted(json.loads(row[0]).get("dtype", "float32") for row in connection.execute("SELECT settings FROM answers"))
    assert stored == ["bfloat16", "float32"]


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, torch.float32), (None, torch.float32)])
def test_auto_is_bfloat16_only_on_a_cpu_with_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        if native is None:  # a torch without the probes
            monkeypatch.delattr(torch.cpu, probe, raising=False)
        else:
            monkeypatch.setattr(torch.cpu, probe, lambda: native, raising=False)
    assert teacher_dtype("auto") == expected
    assert teacher_dtype("float32") == torch.float32 and teacher_dtype("float16") == torch.float16


def test_a_bfloat16_teacher_on_a_cpu_without_native_bf16_warns_and_names_the_fix(tiny_model, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    teacher = build_teacher(TeacherConfig(model=str(tiny_model), dtype="bfloat16"))
    with caplog.at_level(logging.WARNING, logger="domainkd.teachers.hf"):
        teacher.load()
    assert "no native bfloat16" in caplog.text and "teacher.dtype: float32" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="domainkd.teachers.hf"):
        build_teacher(TeacherConfig(model=str(tiny_model), dtype="float32")).load()
    assert caplog.text == ""
