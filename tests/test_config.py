from pathlib import Path

import pytest

from domainkd.config import RunConfig, config_from_dict, load_config
from domainkd.errors import DomainKDError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(REPO.glob("examples/**/*.yaml"))


def test_there_are_shipped_configs():
    assert SHIPPED, "examples/ should ship at least one config"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: str(path.relative_to(REPO)))
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert isinstance(config, RunConfig)
    assert config.data.documents.is_dir()
    assert config.eval.questions.is_file()


def test_defaults_validate():
    config = RunConfig()
    assert config.train.method == "full"
    assert set(config.data.strategies) == {"context_qa", "refusal"}
    assert config.data.strategies["context_qa"]["questions_per_fact"] == 2
    assert (config.serve.host, config.serve.retrieval) == ("127.0.0.1", "none")  # a server binds to localhost


def test_relative_paths_resolve_against_config_file(tmp_path):
    (tmp_path / "cfg.yaml").write_text("data:\n  documents: docs\neval:\n  questions: q.jsonl\n")
    config = load_config(tmp_path / "cfg.yaml")
    assert config.data.documents == tmp_path.resolve() / "docs"
    assert config.eval.questions == tmp_path.resolve() / "q.jsonl"


def test_overrides_merge_over_file(tmp_path):
    (tmp_path / "cfg.yaml").write_text("train:\n  epochs: 3\n  learning_rate: 1.0e-4\n")
    config = load_config(tmp_path / "cfg.yaml", {"train": {"epochs": 1}})
    assert config.train.epochs == 1
    assert config.train.learning_rate == 1e-4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("trian:\n  epochs: 1\n", "unknown key 'trian'"),
        ("train:\n  epoch: 1\n", "unknown key 'train.epoch'"),
        ("train:\n  epochs: -1\n", "bad value for 'train.epochs'"),
        ("train:\n  method: qlora\n", "bad value for 'train.method'"),
        ("data:\n  strategies:\n    magic: {}\n", "unknown data strategy 'magic'"),
        ("data:\n  strategies:\n    context_qa: {paraphrases: 2}\n", "has no parameter 'paraphrases'"),
        ("eval:\n  metrics: [bleu9]\n", "unknown name 'bleu9'"),
        ("eval:\n  systems: [oracle]\n", "unknown name 'oracle'"),
        ("teacher:\n  backend: carrier-pigeon\n", "teacher.backend has unknown name 'carrier-pigeon'"),
        ("teacher:\n  dtype: fp8\n", "bad value for 'teacher.dtype'"),
        ("serve:\n  retrieval: gold\n", "bad value for 'serve.retrieval': Input should be 'none', 'bm25', 'dense' or"),
        ("serve:\n  api_key_env: sk-123\n", "bad value for 'serve.api_key_env': name an environment variable"),
        (
            "data:\n  documents: null\n  strategies:\n    refusal: {}\n"
            "    rebase: {datastore: s, instruction: x, examples: [{input: a, output: b}]}\n",
            "data has no source for refusal; set data.documents, data.records or data.qa_sets, or keep only the rebase",
        ),
        ("data:\n  chunk_tokens: 50\n  chunk_overlap_tokens: 60\n", "chunk_overlap_tokens must be smaller"),
        ("train: [1, 2\n", "not valid YAML at line"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_bad_configs_give_one_sentence(tmp_path, text, expected):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(DomainKDError) as error:
        load_config(path)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_missing_config_file(tmp_path):
    with pytest.raises(DomainKDError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_config_from_dict_reports_source():
    with pytest.raises(DomainKDError, match="^mine: unknown key 'bogus'"):
        config_from_dict({"bogus": 1}, source="mine")
