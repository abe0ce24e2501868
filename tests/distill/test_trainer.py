"""KD on the Trainer with tiny random models: config, vocabulary checks, loss agreement and scale, a full run."""

import json
import shutil

import pytest
import torch
from transformers import AutoConfig, LlamaForCausalLM, TrainingArguments

from domainkd import train
from domainkd.config import KDConfig, RunConfig, config_from_dict
from domainkd.distill import record_teacher_topk
from domainkd.distill.trainer import KDCollator, KDTrainer
from domainkd.distill.vocab import (
    check_vocabularies,
    cut_to_shared_vocab,
    require_compatible,
    require_ids_shared,
    shared_vocab_size,
)
from domainkd.errors import DomainKDError
from domainkd.models import load_causal_lm, load_tokenizer
from domainkd.paths import RunPaths
from domainkd.training.collate import tokenize_example
from tests.conftest import build_tiny_model

EXCHANGES = [
    ("How many days of annual leave do full-time staff get?", "Full-time staff receive 27 days of annual leave."),
    ("When does the car park open?", "The car park opens at 06:40."),
    ("What is the capital of Peru?", "I don't know. The handbook does not cover that."),
    ("How much do replacement badges cost?", "Replacement badges cost 15 euros."),
]


# --- fixtures: a student, a teacher with its tokenizer, a batch ------------------------


@pytest.fixture(scope="module")
def padded_teacher(tiny_model, tmp_path_factory):
    """A teacher with the tiny tokenizer and 16 padded embedding rows, as Qwen2.5 sizes have."""
    directory = tmp_path_factory.mktemp("padded-teacher")
    shutil.copytree(tiny_model, directory, dirs_exist_ok=True)
    config = AutoConfig.from_pretrained(tiny_model)
    config.vocab_size += 16
    config.initializer_range = 0.5
    torch.manual_seed(2)
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="module")
def student(tiny_model):
    return load_causal_lm(tiny_model)


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    return load_causal_lm(tiny_teacher)[0]


@pytest.fixture(scope="module")
def examples(student):
    _, tokenizer = student
    return [
        {**tokenize_example(tokenizer, "Be brief.", question, answer, max_length=96), "index": index}
        for index, (question, answer) in enumerate(EXCHANGES)
    ]


def collate(examples, pad_token_id):
    return KDCollator(pad_token_id)(examples)


def make_trainer(tmp_path, model, kd, **teacher_or_store):
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), use_cpu=True, report_to="none")
    return KDTrainer(model=model, args=args, kd=kd, **teacher_or_store)


def record(teacher, examples, directory, k, temperature, pad_token_id):
    return record_teacher_topk(
        teacher, examples, directory, k, fingerprint={"test": 1}, temperature=temperature,
        pad_token_id=pad_token_id, progress=False,
    )


def response_tokens(batch):
    return int((batch["labels"][:, 1:] != -100).sum())


# --- config --------------------------------------------------------------------------


def test_kd_is_off_by_default():
    assert RunConfig().train.kd is None
    assert config_from_dict({"train": {"kd": None}}).train.kd is None
    kd = config_from_dict({"train": {"kd": {}}}).train.kd
    defaults = (kd.loss, kd.divergence, kd.alpha, kd.temperature, kd.teacher_logits, kd.top_k)
    assert defaults == ("vanilla", "forward_kl", 0.5, 1.0, "offline", 64)


@pytest.mark.parametrize(
    ("kd", "expected"),
    [
        ({"divergence": "kl"}, "unknown name 'kl'; choose from adaptive_kl, forward_kl, jsd, reverse_kl"),
        ({"divergence": "jsd", "divergence_params": {"beta": 1.0}}, "beta must lie in \\(0, 1\\)"),
        ({"divergence_params": {"beta": 0.5}}, "has 'beta', but forward_kl takes no parameters"),
        ({"divergence": "skew_forward_kl", "divergence_params": {"mu": 0.5}}, "skew_forward_kl takes only skew"),
        ({"alpha": 1.5}, "train.kd.alpha"),
        ({"teacher_logits": "cached"}, "train.kd.teacher_logits"),
        ({"top_k": 0}, "train.kd.top_k"),
    ],
)
def test_bad_kd_settings_give_one_sentence(kd, expected):
    with pytest.raises(DomainKDError, match=expected):
        config_from_dict({"train": {"kd": kd}})


@pytest.mark.parametrize(("divergence", "params"), [("jsd", {"beta": 0.2}), ("skew_reverse_kl", {"skew": 0.3}),
                                                    ("adaptive_kl", {"mu": 0.8})])
def test_divergence_params_reach_the_loss(tmp_path, student, teacher, examples, divergence, params):
    """The configured parameter is the one the trainer's loss uses: its value equals the divergence
    computed by hand with that parameter, and differs from the default's."""
    from domainkd.distill.losses import divergence as divergence_of

    model, tokenizer = student
    batch = collate(examples, tokenizer.pad_token_id)
    kd = KDConfig(teacher_logits="online", alpha=1.0, temperature=1.5, divergence=divergence, divergence_params=params)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    response = batch["labels"][:, 1:] != -100
    with torch.no_grad():
        loss = make_trainer(tmp_path, model, kd, teacher=teacher).compute_loss(model, batch)
        student_logits, teacher_logits = (m(**inputs).logits[:, :-1][response] for m in (model, teacher))
        by_hand = divergence_of(divergence, student_logits, teacher_logits, 1.5, **params).mean()
        default = divergence_of(divergence, student_logits, teacher_logits, 1.5).mean()
    torch.testing.assert_close(loss, by_hand, atol=1e-5, rtol=1e-5)
    assert abs(by_hand.item() - default.item()) > 1e-3


# --- vocabularies --------------------------------------------------------------------


def test_same_tokenizer_is_same(tiny_model, tiny_teacher):
    student_tokenizer, teacher_tokenizer = load_tokenizer(tiny_model), load_tokenizer(tiny_teacher)
    size = len(student_tokenizer)
    assert check_vocabularies(student_tokenizer, teacher_tokenizer, size, size) == "same"
    require_compatible("same", "vanilla")


def test_appended_tokens_or_padded_rows_are_same_prefix(tiny_model):
    tokenizer, extended = load_tokenizer(tiny_model), load_tokenizer(tiny_model)
    extended.add_tokens(["<|extra_1|>", "<|extra_2|>"])
    size = len(tokenizer)
    assert check_vocabularies(tokenizer, extended, size, size + 2) == "same-prefix"
    assert check_vocabularies(extended, tokenizer, size + 2, size) == "same-prefix"
    assert check_vocabularies(tokenizer, tokenizer, size, size + 64) == "same-prefix"  # padded embedding rows
    require_compatible("same-prefix", "vanilla")

    assert shared_vocab_size(tokenizer, extended, size, size + 2) == size
    assert shared_vocab_size(tokenizer, tokenizer, size, size + 64) == size
    logits = torch.randn(2, 3, size + 2)
    assert cut_to_shared_vocab(logits, size).shape == (2, 3, size)
    assert cut_to_shared_vocab(logits, None) is logits
    with pytest.raises(DomainKDError, match=f"student token id {size}, past the {size} tokens"):
        require_ids_shared(size, size)


def test_other_tokenizer_is_different_and_refused(tiny_model, tmp_path):
    other = build_tiny_model(tmp_path / "other", ["zebras juggle quantum xylophones under violet moons."] * 20)
    tokenizer, other_tokenizer = load_tokenizer(tiny_model), load_tokenizer(other)
    relation = check_vocabularies(tokenizer, other_tokenizer, len(tokenizer), len(other_tokenizer))
    assert relation == "different"
    with pytest.raises(DomainKDError) as error:
        require_compatible(relation, "vanilla")
    message = str(error.value)
    assert "does not work with a teacher whose tokenizer differs" in message
    assert "use one of dskd, uld, mined" in message and "`train.kd: null`" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence


# --- the loss in compute_loss --------------------------------------------------------


@pytest.mark.parametrize(("alpha", "temperature"), [(1.0, 1.0), (0.5, 2.0)])
def test_online_and_offline_full_vocabulary_agree(tmp_path, student, teacher, examples, alpha, temperature):
    model, tokenizer = student
    vocab_size = teacher.config.vocab_size
    kd = KDConfig(alpha=alpha, temperature=temperature)
    store = record(teacher, examples, tmp_path / "store", vocab_size, temperature, tokenizer.pad_token_id)
    batch = collate(examples, tokenizer.pad_token_id)

    online = make_trainer(tmp_path, model, kd, teacher=teacher).compute_loss(model, batch)
    offline = make_trainer(tmp_path, model, kd, store=store).compute_loss(model, batch)
    assert online.item() > 0.5  # a real signal, not a near-zero loss that any tolerance would pass
    torch.testing.assert_close(offline, online, atol=1e-3, rtol=0)


def test_alpha_zero_is_the_plain_sft_loss(tmp_path, student, teacher, examples):
    model, tokenizer = student
    batch = collate(examples, tokenizer.pad_token_id)
    store = record(teacher, examples, tmp_path / "store", 16, 1.0, tokenizer.pad_token_id)
    with torch.no_grad():
        sft = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        for teacher_or_store in [{"teacher": teacher}, {"store": store}]:
            trainer = make_trainer(tmp_path, model, KDConfig(alpha=0.0), **teacher_or_store)
            torch.testing.assert_close(trainer.compute_loss(model, batch), sft, atol=1e-5, rtol=0)


@pytest.mark.parametrize("teacher_logits", ["online", "offline"])
def test_micro_batches_normalised_by_num_items_sum_to_the_full_batch(
    tmp_path, student, teacher, examples, teacher_logits
):
    model, tokenizer = student
    kd = KDConfig(teacher_logits=teacher_logits, top_k=16)
    if teacher_logits == "online":
        trainer = make_trainer(tmp_path, model, kd, teacher=teacher)
    else:
        store = record(teacher, examples, tmp_path / "store", 16, 1.0, tokenizer.pad_token_id)
        trainer = make_trainer(tmp_path, model, kd, store=store)
    full = collate(examples, tokenizer.pad_token_id)
    micro_batches = [collate(examples[:2], tokenizer.pad_token_id), collate(examples[2:], tokenizer.pad_token_id)]

    # The Trainer's own count for an accumulated batch: the shifted response tokens the loss scores.
    _, num_items = trainer.get_batch_samples(iter(micro_batches), 2, trainer.args.device)
    assert int(num_items) == response_tokens(full) == sum(response_tokens(batch) for batch in micro_batches)
    with torch.no_grad():
        summed = sum(trainer.compute_loss(model, batch, num_items_in_batch=num_items) for batch in micro_batches)
        whole = trainer.compute_loss(model, full)
    torch.testing.assert_close(summed, whole, atol=1e-5, rtol=0)


def test_a_store_of_other_inputs_is_refused(tmp_path, student, teacher, examples):
    model, tokenizer = student
    shorter = [{**example, "labels": example["labels"][:-1] + [-100]} for example in examples]
    store = record(teacher, shorter, tmp_path / "store", 16, 1.0, tokenizer.pad_token_id)
    trainer = make_trainer(tmp_path, model, KDConfig(top_k=16), store=store)
    with pytest.raises(DomainKDError, match="store was written for other inputs"):
        trainer.compute_loss(model, collate(examples, tokenizer.pad_token_id))


def test_a_store_at_another_temperature_is_refused(tmp_path, student, teacher, examples):
    model, tokenizer = student
    store = record(teacher, examples, tmp_path / "store", 16, 2.0, tokenizer.pad_token_id)
    with pytest.raises(DomainKDError, match="recorded at temperature 2.0"):
        make_trainer(tmp_path, model, KDConfig(top_k=16, temperature=1.0), store=store)


# --- the train stage -----------------------------------------------------------------


def test_offline_kd_run_records_the_store_once(tiny_config, taught, tiny_teacher, monkeypatch):
    tiny_config.train.kd = KDConfig(teacher=str(tiny_teacher), teacher_logits="offline", top_k=16)
    taught(tiny_config)
    summary = train(tiny_config)
    paths = RunPaths(tiny_config.output_dir)

    assert summary["objective"] == "kd" and summary["steps"] >= 1
    assert summary["kd"]["divergence"] == "forward_kl" and summary["kd"]["teacher"] == str(tiny_teacher)
    assert all({"ce", "kd"} <= entry.keys() for entry in summary["log"])
    meta = json.loads((paths.teacher_topk / "meta.json").read_text())
    assert meta["examples_done"] == summary["examples"] and meta["k"] == 16
    ids_written = (paths.teacher_topk / "ids.bin").stat().st_mtime_ns

    import domainkd.distill.prepare as prepare
    import domainkd.training.sft as sft

    loaded, load = [], sft.load_causal_lm

    def recording_load(reference, **kwargs):
        loaded.append(reference)
        return load(reference, **kwargs)

    monkeypatch.setattr(sft, "load_causal_lm", recording_load)
    monkeypatch.setattr(prepare, "load_causal_lm", recording_load)
    train(tiny_config)
    assert loaded == [tiny_config.student.model]  # the teacher is not even loaded
    assert json.loads((paths.teacher_topk / "meta.json").read_text()) == meta
    assert (paths.teacher_topk / "ids.bin").stat().st_mtime_ns == ids_written


def test_padded_teacher_distils_over_the_shared_columns(tiny_config, taught, padded_teacher):
    tiny_config.train.kd = KDConfig(teacher=str(padded_teacher), top_k=16)
    taught(tiny_config)
    summary = train(tiny_config)
    assert summary["objective"] == "kd" and summary["steps"] >= 1
    meta = json.loads((RunPaths(tiny_config.output_dir).teacher_topk / "meta.json").read_text())
    assert meta["vocab_size"] == len(load_tokenizer(tiny_config.student.model))  # the padded rows are cut


def test_online_kd_run_records_no_store(tiny_config, taught, tiny_teacher):
    tiny_config.train.kd = KDConfig(teacher=str(tiny_teacher), teacher_logits="online", alpha=0.7)
    taught(tiny_config)
    summary = train(tiny_config)
    assert summary["objective"] == "kd" and summary["kd"]["teacher_logits"] == "online" and summary["steps"] >= 1
    assert not RunPaths(tiny_config.output_dir).teacher_topk.exists()


def test_plain_sft_summary_says_so(tiny_config, taught):
    taught(tiny_config)
    assert train(tiny_config)["objective"] == "sft"


def test_vanilla_kd_from_a_teacher_with_another_tokenizer_stops_before_training(tiny_config, taught, tmp_path):
    other = build_tiny_model(tmp_path / "other", ["zebras juggle quantum xylophones under violet moons."] * 20)
    tiny_config.train.kd = KDConfig(teacher=str(other))
    taught(tiny_config)
    with pytest.raises(DomainKDError, match="use one of dskd, uld, mined"):
        train(tiny_config)
    assert not RunPaths(tiny_config.output_dir).checkpoints.exists()


def test_context_distillation_records_the_teacher_reading_each_source(tiny_config, tiny_teacher):
    from domainkd.data.build import load_chunks
    from domainkd.distill.logits_store import TopKStore, _teacher_topk_batch
    from domainkd.evaluation.systems import excerpt_prompt
    from domainkd.io import read_jsonl
    from domainkd.training.collate import tokenize_row

    from domainkd import prepare_data
    from domainkd.io import write_jsonl

    prepare_data(tiny_config)
    paths = RunPaths(tiny_config.output_dir)
    sources = load_chunks(paths)
    write_jsonl(paths.train_set, [
        {"strategy": "context_qa", "question": "How much leave?", "answer": "27 days.", "chunk_id": sources[0].chunk_id},
        {"strategy": "context_qa", "question": "When does it open?", "answer": "At 06:40.", "chunk_id": sources[1].chunk_id},
        {"strategy": "refusal", "question": "What is the capital of Peru?", "answer": tiny_config.refusal_text},
    ])
    tiny_config.train.kd = KDConfig(teacher=str(tiny_teacher), top_k=16, tail_samples=0)
    train(tiny_config)
    plain = TopKStore(paths.teacher_topk)
    plain_rows = [plain[index] for index in range(len(plain))]
    tiny_config.train.kd = KDConfig(teacher=str(tiny_teacher), top_k=16, tail_samples=0, teacher_context="source")
    summary = train(tiny_config)  # another fingerprint: recorded afresh
    store = TopKStore(paths.teacher_topk)
    assert summary["kd"]["teacher_context"] == "source" and len(store) == len(plain_rows)

    rows = read_jsonl(paths.train_set)
    chunks = {chunk.chunk_id: chunk for chunk in load_chunks(paths)}
    teacher, tokenizer = load_causal_lm(tiny_teacher)
    teacher.eval()
    checked = 0
    for index, row in enumerate(rows):
        if not row.get("chunk_id") or not row.get("question"):
            assert torch.equal(store[index][0], plain_rows[index][0])  # read as it is
            continue
        reading = {**row, "prompt": excerpt_prompt(row["question"], [chunks[row["chunk_id"]]], tiny_config.refusal_text)}
        tokens = tokenize_row(tokenizer, tiny_config.system_prompt, reading, 1 << 30)
        ids, logprobs, _ = _teacher_topk_batch(teacher, [tokens], 16)[0]
        assert torch.equal(store[index][0], ids)
        torch.testing.assert_close(store[index][1], logprobs, atol=2e-3, rtol=0)  # stored as float16
        assert not torch.equal(store[index][1], plain_rows[index][1])  # the source changed what the teacher says
        checked += 1
    assert checked >= 2


def test_context_distillation_needs_the_offline_store():
    with pytest.raises(ValueError, match="teacher_context needs teacher_logits: offline"):
        KDConfig(teacher_context="source", teacher_logits="online")


def test_each_epoch_uses_its_own_tail_draws(tmp_path, student, teacher, examples):
    """The store keeps tail_samples draws per token for every epoch; epoch e trains on the e-th set, so no draw
    is used twice (reusing 8 fixed draws lets the student fit its tail to them, see bench/tail_estimator.py)."""
    from domainkd.distill.prepare import _tail_samples

    model, tokenizer = student
    assert _tail_samples(KDConfig(tail_samples=8), epochs=2.5) == 24
    assert _tail_samples(KDConfig(tail_samples=8, divergence="jsd"), epochs=2) == 0
    store = record_teacher_topk(teacher, examples, tmp_path / "store", 16, fingerprint={}, progress=False,
                                pad_token_id=tokenizer.pad_token_id, tail_samples=24)
    trainer = make_trainer(tmp_path, model, KDConfig(top_k=16, tail_samples=8), store=store)
    batch = collate(examples, tokenizer.pad_token_id)
    counts = (batch["labels"][:, 1:] != -100).sum(1)
    stored = torch.cat([store.tail(index)[0] for index in batch["index"].tolist()])
    seen = []
    for epoch in (0.0, 0.99, 1.0, 2.5, 3.2):
        trainer.state.epoch = epoch
        seen.append(trainer._stored_topk(batch["index"], counts).tail[0])
    torch.testing.assert_close(seen[0], stored[:, :8])
    torch.testing.assert_close(seen[1], stored[:, :8])  # still the first epoch
    torch.testing.assert_close(seen[2], stored[:, 8:16])
    torch.testing.assert_close(seen[3], stored[:, 16:])
    torch.testing.assert_close(seen[4], stored[:, :8])  # past the recorded epochs: round again
