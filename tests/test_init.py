"""`domainkd init DOCS_DIR`: a commented config that loads, with the folder's counts, a plan and a time estimate."""

from __future__ import annotations

import json
import re

import pytest

from domainkd.config import load_config
from domainkd.data.build import prepare_data
from domainkd.errors import DomainKDError
from domainkd.init import RECIPES, REFERENCE_RATES, init_config


def _init(small_docs, tiny_model, out, **options):
    return init_config(small_docs, out, student=str(tiny_model), teacher=str(tiny_model), **options)


def test_the_written_config_loads_and_states_the_folders_counts_and_plan(tmp_path, small_docs, tiny_model):
    out = tmp_path / "configs" / "mine.yaml"
    plan = _init(small_docs, tiny_model, out, documents="policy notes", askers="new starters", measure=False)
    config = load_config(out)
    assert config.data.documents.resolve() == small_docs.resolve()
    assert (config.domain.documents, config.domain.askers) == ("policy notes", "new starters")
    assert config.eval.questions is None and config.teacher_writes_eval
    assert config.student.model == str(tiny_model) and config.data.raft is not None
    dry_run = prepare_data(config, dry_run=True)  # what the header promises is what `data --dry-run` says
    text = out.read_text(encoding="utf-8")
    assert f"# {dry_run['documents']} documents, {dry_run['chunks']} chunks" in text
    assert f"{dry_run['teacher_calls']} in all" in text and plan["teacher_calls"] == dry_run["teacher_calls"]
    assert f"context_qa {dry_run['strategies']['context_qa']['teacher_calls']}," in text
    assert set(plan["minutes"]) == {"data", "teach", "train", "eval"} and plan["fits"]
    assert plan["recipe"] == RECIPES[0].describe() and REFERENCE_RATES.measured_on in plan["rates_from"]
    assert "`domainkd run mine.yaml`" in text
    # the estimate is the plan times the rates
    teach = dry_run["teacher_calls"] * REFERENCE_RATES.teacher_request / 60
    assert plan["minutes"]["teach"] == pytest.approx(teach, abs=0.06)


def test_a_small_budget_scales_the_recipe_down_and_says_when_even_the_cheapest_does_not_fit(tmp_path, small_docs, tiny_model):
    roomy = _init(small_docs, tiny_model, tmp_path / "a.yaml", measure=False, minutes=600)
    tight = _init(small_docs, tiny_model, tmp_path / "b.yaml", measure=False, minutes=1)
    assert roomy["fits"] and roomy["recipe"] == RECIPES[0].describe()
    assert not tight["fits"] and tight["recipe"] == RECIPES[-1].describe()
    assert tight["teacher_calls"] < roomy["teacher_calls"]
    assert "does NOT fit" in (tmp_path / "b.yaml").read_text(encoding="utf-8")
    cheapest = load_config(tmp_path / "b.yaml")
    assert cheapest.train.epochs == 1 and cheapest.data.strategies["context_qa"]["questions_per_fact"] == 1


def test_measured_rates_come_from_timing_the_models_here(tmp_path, small_docs, tiny_model):
    plan = _init(small_docs, tiny_model, tmp_path / "m.yaml", measure=True)
    assert plan["rates_from"].startswith("this machine, just now")
    rates = re.search(r"([\d.e-]+) s per teacher request", (tmp_path / "m.yaml").read_text(encoding="utf-8"))
    assert rates and float(rates.group(1)) > 0


def test_bad_folders_and_an_existing_file_get_one_sentence(tmp_path, small_docs, tiny_model):
    with pytest.raises(DomainKDError, match="is not a folder"):
        _init(tmp_path / "nowhere", tiny_model, tmp_path / "x.yaml", measure=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DomainKDError):
        _init(tmp_path / "empty", tiny_model, tmp_path / "x.yaml", measure=False)
    assert not (tmp_path / "x.yaml").exists()
    out = tmp_path / "kept.yaml"
    out.write_text("name: mine\n", encoding="utf-8")
    with pytest.raises(DomainKDError, match="already exists; pass --force"):
        _init(small_docs, tiny_model, out, measure=False)
    assert out.read_text(encoding="utf-8") == "name: mine\n"
    _init(small_docs, tiny_model, out, measure=False, force=True)
    assert load_config(out).name == small_docs.name.lower()


def test_cli_init_prints_the_plan(tmp_path, small_docs, tiny_model):
    from typer.testing import CliRunner

    from domainkd.cli import app

    out = tmp_path / "cli.yaml"
    result = CliRunner().invoke(
        app, ["init", str(small_docs), "--out", str(out), "--no-measure", "--student", str(tiny_model), "--documents", "notes"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["config"] == str(out) and load_config(out).domain.documents == "notes"


def test_quotes_and_colons_in_the_domain_survive_the_file(tmp_path, small_docs, tiny_model):
    out = tmp_path / "q.yaml"
    _init(small_docs, tiny_model, out, documents='the "Q3" notes: draft \\ two', askers="staff: all", measure=False)
    assert (load_config(out).domain.documents, load_config(out).domain.askers) == ('the "Q3" notes: draft \\ two', "staff: all")
