"""The vLLM backend without vLLM: it must say how to get it, and key its answers like the others."""

import sys
import types

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
    named = _teacher(temperature=0.7, top_p=0.9, seed=3, dtype="bfloat16")
    assert named.settings() == build_teacher(named.config.model_copy(update={"backend": "hf"})).settings()
    # float32 is named too: unnamed means vLLM's auto, the model's own format
    assert _teacher(dtype="float32").settings()["dtype"] == "float32"


def test_a_named_dtype_is_passed_to_vllm_and_keys_the_answers(monkeypatch, tmp_path):
    engines = []

    class FakeLLM:
        def __init__(self, **options):
            engines.append(options)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM))
    monkeypatch.setattr("domainkd.models.resolve_model", lambda reference: tmp_path)
    teacher = _teacher(dtype="bfloat16")
    teacher.load()
    assert engines == [{"model": str(tmp_path), "dtype": "bfloat16", "trust_remote_code": False, "seed": 0}]
    assert teacher.settings() == {"max_new_tokens": 256, "temperature": 0.0, "dtype": "bfloat16"}
    assert "dtype" not in _teacher().settings()  # auto: vLLM reads the model's own format
