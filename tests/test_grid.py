"""`domainkd grid` end to end on tiny models: every cell trained and evaluated once, then skipped."""

import json

import pytest

import domainkd.grid as grid_module
from domainkd.config import config_from_dict
from domainkd.errors import DomainKDError
from domainkd.grid import run_grid


@pytest.fixture()
def grid_config(tiny_config, tiny_teacher, other_teacher):
    raw = tiny_config.model_dump(mode="json")
    raw["train"].update(max_length=320, kd={"top_k": 8})
    raw["grid"] = {
        "teachers": {"same_vocab": str(tiny_teacher), "different_vocab": str(other_teacher)},
        "teacher_sft": [False, True],
        "student_sft": [False, True],
        "losses": ["vanilla", "dskd"],
        "student_layers": 1,
        "teacher_sft_train": {"epochs": 1},
    }
    return config_from_dict(raw)


def test_grid_runs_every_cell_once_and_resumes(grid_config, monkeypatch):
    table = run_grid(grid_config)
    root = grid_config.output_dir
    rows = json.loads((root / "grid.json").read_text())["rows"]
    cells = [row for row in rows if "loss" in row]
    assert len(cells) == 2 * 2 * 2 * 2 and len(rows) == len(cells) + 2  # + untrained and SFT-only students
    assert {row["loss"] for row in cells if row["vocabulary"] == "different"} == {"mined", "dskd"}
    assert {row["loss"] for row in cells if row["vocabulary"] == "same"} == {"vanilla", "dskd"}
    assert all(row["scores"]["token_f1"]["n"] == 2 for row in rows)  # the same in-scope questions everywhere
    assert table.count("\n| ") == len(rows) and (root / "grid.md").read_text().strip() == table
    significance = json.loads((root / "grid.json").read_text())["significance"]
    assert significance["reference"] == "student SFT (no KD)" and set(significance["comparisons"]) == set(grid_module.TABLE_METRICS)
    for pairs in significance["comparisons"].values():  # every other row against the reference, Holm over those
        assert [pair["a"] for pair in pairs] == [row["cell"] for row in rows if row["cell"] != significance["reference"]]
        assert {pair["b"] for pair in pairs} == {"student SFT (no KD)"}
    assert table.endswith('significantly better / worse than "student SFT (no KD)" (paired Wilcoxon, '
                          "Holm-corrected over the cells of each metric, α = 0.05).")
    assert (root / "student-1-layers" / "config.json").is_file()
    assert json.loads((root / "student-1-layers" / "config.json").read_text())["num_hidden_layers"] == 1

    trained = []
    monkeypatch.setattr(grid_module, "train", lambda config: trained.append(config) or {})
    assert run_grid(grid_config) == table  # finished cells are skipped, shared models reused
    assert trained == []


def test_a_config_without_grid_section_is_refused(tiny_config):
    with pytest.raises(DomainKDError, match="has no `grid` section"):
        run_grid(tiny_config)


def test_bad_grid_settings_give_one_sentence(tiny_config):
    raw = tiny_config.model_dump(mode="json")
    raw["grid"] = {"teachers": {}}
    with pytest.raises(DomainKDError, match="name at least one teacher"):
        config_from_dict(raw)
    raw["grid"] = {"teachers": {"a": "x"}, "teacher_sft_train": {"epoch": 1}}
    with pytest.raises(DomainKDError, match="grid.teacher_sft_train"):
        config_from_dict(raw)


def test_a_changed_training_set_is_copied_again(grid_config, tmp_path):
    from domainkd.grid import _with_training_set, _variant
    from domainkd.paths import RunPaths

    root = grid_config.output_dir
    base = RunPaths(root / "base")
    for name, text in [("data/chunks.jsonl", "{}\n"), ("teach/train.jsonl", '{"question": "a", "answer": "b"}\n')]:
        (base.root / name).parent.mkdir(parents=True, exist_ok=True)
        (base.root / name).write_text(text)
    cell = _variant(grid_config, root / "cells" / "one")
    _with_training_set(cell, root)
    base.train_set.write_text('{"question": "c", "answer": "d"}\n')
    _with_training_set(cell, root)
    assert RunPaths(cell.output_dir).train_set.read_text() == base.train_set.read_text()


def test_unusable_teacher_labels_are_refused(tiny_config):
    raw = tiny_config.model_dump(mode="json")
    raw["grid"] = {"teachers": {"../up": "x"}}
    with pytest.raises(DomainKDError, match="names directories"):
        config_from_dict(raw)


def test_table_marks_cells_significantly_better_or_worse_than_the_reference():
    rows = [
        {"cell": "student SFT (no KD)", "scores": {metric: {"mean": 0.5} for metric in grid_module.TABLE_METRICS}},
        {"cell": "kd-a", "loss": "vanilla", "scores": {metric: {"mean": 0.7} for metric in grid_module.TABLE_METRICS}},
        {"cell": "kd-b", "loss": "dskd", "scores": {metric: {"mean": 0.3} for metric in grid_module.TABLE_METRICS}},
    ]
    pairs = [
        {"a": "kd-a", "b": "student SFT (no KD)", "significant": True, "better": "kd-a"},
        {"a": "kd-b", "b": "student SFT (no KD)", "significant": True, "better": "student SFT (no KD)"},
    ]
    table = grid_module.results_table(rows, {"reference": "student SFT (no KD)", "alpha": 0.05, "comparisons": {"token_f1": pairs}})
    lines = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "| 70.0 ▲ |" in lines["kd-a"] and "| 30.0 ▼ |" in lines["kd-b"]
    assert lines["kd-a"].count("▲") == 1 and "▲" not in lines["student SFT (no KD)"]  # only token_f1 was tested
