"""`domainkd export`: a standalone transformers model (LoRA merged), safetensors only, checked by its logits."""

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from domainkd.cli import app
from domainkd.config import dump_config
from domainkd.errors import DomainKDError
from domainkd.models import chat_messages, load_causal_lm, render_prompt
from domainkd.paths import RunPaths
from domainkd.serving import export_model
from tests.conftest import CHATML

PROBE = "How many days of annual leave do full-time staff get?"


def _probe_ids(tokenizer, system_prompt):
    text = render_prompt(tokenizer, chat_messages(system_prompt, PROBE))
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits[0]




def test_export_loads_with_plain_transformers_and_gives_the_source_logits(trained_run, tiny_config, tmp_path):
    metrics = {"systems": {"student": {"scores": {"exact_match": {"mean": 0.5, "n": 2}, "bertscore": {"mean": None, "n": 0}}}}}
    RunPaths(trained_run).metrics.parent.mkdir(parents=True)
    RunPaths(trained_run).metrics.write_text(json.dumps(metrics), encoding="utf-8")

    out = export_model(trained_run, tmp_path / "export")

    names = {path.name for path in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"} <= names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".export")], "no temporary folder is left"
    exported = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    source, source_tokenizer = load_causal_lm(RunPaths(trained_run).model)
    assert tokenizer.chat_template == CHATML
    ids = _probe_ids(tokenizer, tiny_config.system_prompt)
    assert torch.equal(ids, _probe_ids(source_tokenizer, tiny_config.system_prompt))
    assert torch.allclose(_logits(exported, ids), _logits(source, ids), atol=1e-6)
    assert exported.generation_config.pad_token_id == tokenizer.pad_token_id
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "# tiny" in card and str(tiny_config.student.model) in card and "full fine-tuning" in card
    assert "| exact_match | 0.500 |" in card and "| bertscore | n/a |" in card
    assert tiny_config.system_prompt in card
    usage = card.split("## Usage")[1].split("```python")[1].split("```")[0].replace("path/to/this/folder", str(out))
    exec(usage, {})  # the card's snippet runs as written


def test_bfloat16_export_is_stored_and_reloaded_in_bfloat16(trained_run, tmp_path):
    out = export_model(trained_run, tmp_path / "bf16", dtype="bfloat16")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(out).dtype == torch.bfloat16


def test_a_lora_adapter_alone_is_merged_into_the_base_model(tiny_config, tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model

    tiny_config.train.method = "lora"
    paths = RunPaths(tiny_config.output_dir)
    dump_config(tiny_config, paths.config)
    base, tokenizer = load_causal_lm(tiny_model)
    torch.manual_seed(3)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)  # non-zero B: merging matters
    peft_model = get_peft_model(base, lora).eval()
    peft_model.save_pretrained(paths.adapter)
    ids = _probe_ids(tokenizer, tiny_config.system_prompt)
    adapted = _logits(peft_model, ids)
    with peft_model.disable_adapter():
        plain = _logits(peft_model, ids)

    out = export_model(paths.root, tmp_path / "merged")

    merged = _logits(AutoModelForCausalLM.from_pretrained(out), ids)
    assert torch.allclose(merged, adapted, atol=1e-5)
    assert not torch.allclose(merged, plain, atol=1e-3), "the adapter changed the model"
    assert "LoRA (r=16" in (out / "README.md").read_text(encoding="utf-8")
    assert not any(out.glob("adapter_*")), "a merged model, not an adapter"


def test_export_errors_are_one_sentence_and_write_nothing(trained_run, tmp_path):
    with pytest.raises(DomainKDError, match="does not exist"):
        export_model(tmp_path / "no-run", tmp_path / "out")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(DomainKDError, match="is not empty; .* --force"):
        export_model(trained_run, occupied)
    assert [path.name for path in occupied.iterdir()] == ["keep.txt"]
    with pytest.raises(DomainKDError, match="would overwrite the run"):
        export_model(trained_run, trained_run, force=True)
    with pytest.raises(DomainKDError, match="unknown dtype"):
        export_model(trained_run, tmp_path / "out", dtype="int8")
    shutil.rmtree(RunPaths(trained_run).model)
    with pytest.raises(DomainKDError, match="run `domainkd train CONFIG` first"):
        export_model(trained_run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_export_replaces_a_folder_only_with_force(trained_run, tmp_path):
    out = tmp_path / "cli-export"
    out.mkdir()
    (out / "old.txt").write_text("old")
    refused = CliRunner().invoke(app, ["export", str(trained_run), str(out)])
    assert isinstance(refused.exception, DomainKDError) and "--force" in str(refused.exception)
    result = CliRunner().invoke(app, ["export", str(trained_run), str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert not (out / "old.txt").exists() and (out / "model.safetensors").is_file()
