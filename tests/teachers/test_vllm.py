"""The vLLM backend without vLLM: it must say how to get it, and key its answers like the others."""

import sys

import pytest

from domainkd.config import config_from_dict
from domainkd.errors import DomainKDError
from domainkd.teachers import build_teacher


def _teacher(**teacher):
    return build_teacher(config_from_dict({"teacher": {"backend": "vllm", "model": "some/model", **teacher}}).teacher)


def test_load_without_vllm_says_to_install_it_or_use_the_openai_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm fails even where it is installed
    with pytest.raises(DomainKDError) as error:
        _teacher().load()
    message = str(error.value)
    assert "pip install vllm" in message and "GPU machine" in message and "backend: openai" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence


def test_identity_and_settings_key_answers_like_the_hf_backend():
    teacher = _teacher(batch_size=64, max_new_tokens=32)
    assert teacher.identity == "vllm:some/model"
    assert teacher.batch_size == 64
    assert teacher.settings() == {"max_new_tokens": 32, "temperature": 0.0}
    sampled = _teacher(temperature=0.7, top_p=0.9, seed=3)
    assert sampled.settings() == {"max_new_tokens": 256, "temperature": 0.7, "top_p": 0.9, "seed": 3}
    assert sampled.settings() == build_teacher(sampled.config.model_copy(update={"backend": "hf"})).settings()
