"""Shared fixtures: tiny random-initialised models built in seconds, and a small handbook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from domainkd.config import RunConfig, config_from_dict

REPO = Path(__file__).resolve().parents[1]
HANDBOOK = REPO / "examples" / "handbook"
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_model(
    directory: Path, corpus: list[str], vocab_size: int = 400, layers: int = 2, hidden_size: int = 32
) -> Path:
    """Save a random-initialised Llama (~100k parameters) with a BPE tokenizer trained on ``corpus``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=fast.bos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    fast.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def small_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short handbook sections in a folder."""
    folder = tmp_path_factory.mktemp("docs")
    (folder / "01-leave.md").write_text(
        "# Annual Leave\n\nFull-time staff receive 27 days of annual leave. Requests go through form HR-22.\n\n"
        "- short requests need 6 days' notice;\n- longer requests need 19 days' notice.\n",
        encoding="utf-8",
    )
    (folder / "02-parking.md").write_text(
        "# Parking\n\nThe car park opens at 06:40. Permits cost 85 euros a year and are issued by Tomas Brenner.\n",
        encoding="utf-8",
    )
    (folder / "03-security.md").write_text(
        "# Security\n\nLost badges are reported on extension 4190 within 2 hours. Replacement badges cost 15 euros.\n",
        encoding="utf-8",
    )
    return folder


@pytest.fixture(scope="session")
def small_eval(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Held-out questions for ``small_docs``: two in scope, one out of scope."""
    path = tmp_path_factory.mktemp("eval") / "eval.jsonl"
    rows = [
        {"id": "q1", "question": "How much holiday do full-timers get?", "answer": "27 days.", "facts": ["27"], "source": "01-leave.md", "scope": "in"},
        {"id": "q2", "question": "Who hands out parking permits?", "answer": "Tomas Brenner.", "facts": ["Brenner"], "source": "02-parking.md", "scope": "in"},
        {"id": "o1", "question": "What is the capital of Peru?", "answer": "I don't know.", "facts": [], "source": None, "scope": "out"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, small_docs: Path) -> Path:
    """A tiny random Llama + BPE tokenizer directory (safetensors)."""
    corpus = [path.read_text(encoding="utf-8") for path in sorted(small_docs.glob("*.md"))]
    corpus += ["Question: What is it? Answer: It is 27 days. I don't know. The handbook does not cover that."] * 3
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), corpus)


@pytest.fixture()
def tiny_config(tmp_path: Path, tiny_model: Path, small_docs: Path, small_eval: Path) -> RunConfig:
    """A run config wired to the tiny model as both teacher and student, writing under tmp_path."""
    return config_from_dict(
        {
            "name": "tiny",
            "run_dir": str(tmp_path / "run"),
            "refusal_text": "I don't know. The handbook does not cover that.",  # in the tiny tokenizer's corpus
            "student": {"model": str(tiny_model)},
            "teacher": {"model": str(tiny_model), "batch_size": 4, "max_new_tokens": 16},
            "data": {"documents": str(small_docs), "strategies": {"context_qa": {"paraphrases_per_question": 1}, "refusal": {"plausible": True}}},
            "train": {"epochs": 1, "batch_size": 8, "max_length": 96, "save_steps": 2},
            "eval": {"questions": str(small_eval), "max_new_tokens": 8, "batch_size": 4},
        }
    )


# --- KD teachers and a taught run, shared by the distillation and grid tests ---


@pytest.fixture(scope="session")
def tiny_teacher(tiny_model, tmp_path_factory):
    """The tiny model's directory with re-initialised, sharper weights: same tokenizer, other distributions."""
    directory = tmp_path_factory.mktemp("tiny-teacher")
    shutil.copytree(tiny_model, directory, dirs_exist_ok=True)
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(tiny_model)
    config.initializer_range = 0.5  # logits spread over a few nats, so the KD terms are far from 0
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="session")
def other_teacher(tmp_path_factory, small_docs):
    """A tiny teacher with its own tokenizer (other merges, other size, wider hidden states)."""
    corpus = [path.read_text(encoding="utf-8") for path in sorted(small_docs.glob("*.md"))]
    corpus += ["Staff ask; the handbook answers. I don't know. The handbook does not cover that."] * 3
    return build_tiny_model(tmp_path_factory.mktemp("other-teacher"), corpus, vocab_size=330, hidden_size=48)


@pytest.fixture(scope="session")
def taught(tmp_path_factory):
    """Run the data and teach stages into a config's run directory, generating the answers only once."""
    cache = tmp_path_factory.mktemp("taught-run")

    def prepare(config):
        if any(cache.iterdir()):
            shutil.copytree(cache, config.output_dir)
        else:
            from domainkd import prepare_data, teach

            prepare_data(config)
            teach(config)
            shutil.copytree(config.output_dir, cache, dirs_exist_ok=True)

    return prepare
