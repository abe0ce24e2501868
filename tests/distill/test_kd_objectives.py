"""DSKD, ULD, MinED and on-policy steps inside KDTrainer and the train stage, with tiny random models."""

import json

import pytest
import torch
from safetensors import safe_open
from transformers import TrainingArguments

from domainkd import train
from domainkd.config import KDConfig, config_from_dict
from domainkd.distill import record_teacher_topk
from domainkd.distill.align import VocabularyMap
from domainkd.distill.dskd import DSKDProjectors
from domainkd.distill.trainer import PROJECTORS, KDCollator, KDTrainer
from domainkd.errors import DomainKDError
from domainkd.models import load_causal_lm, load_tokenizer
from domainkd.paths import RunPaths
from domainkd.training.collate import tokenize_example

EXCHANGES = [
    ("How many days of annual leave do full-time staff get?", "Full-time staff receive 27 days of annual leave."),
    ("When does the car park open?", "The car park opens at 06:40."),
    ("What is the capital of Peru?", "I don't know. The handbook does not cover that."),
]


@pytest.fixture(scope="module")
def student(tiny_model):
    return load_causal_lm(tiny_model)


def make_trainer(tmp_path, model, kd, **kwargs):
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), use_cpu=True, report_to="none", seed=3)
    return KDTrainer(model=model, args=args, kd=kd, **kwargs)


def same_tokenizer_examples(tokenizer):
    return [
        {**tokenize_example(tokenizer, "Be brief.", question, answer, max_length=96), "index": index}
        for index, (question, answer) in enumerate(EXCHANGES)
    ]


# --- DSKD, same vocabulary -----------------------------------------------------------


def test_dskd_offline_store_of_hidden_states_gives_the_online_loss(tmp_path, student, tiny_teacher):
    model, tokenizer = student
    teacher = load_causal_lm(tiny_teacher)[0]
    examples = same_tokenizer_examples(tokenizer)
    store = record_teacher_topk(
        teacher, examples, tmp_path / "store", 16, fingerprint={}, pad_token_id=tokenizer.pad_token_id,
        progress=False, hidden=True,
    )
    assert store.meta["hidden_size"] == teacher.config.hidden_size
    assert set(store.teacher_head()) == {"output", "embedding"}
    batch = KDCollator(tokenizer.pad_token_id)(examples)
    kd = KDConfig(loss="dskd", alpha=0.5)
    losses = []
    for source in [{"teacher": teacher}, {"store": store}]:
        torch.manual_seed(0)
        projectors = DSKDProjectors(model.config.hidden_size, teacher.config.hidden_size, cross_attention=False)
        trainer = make_trainer(tmp_path, model, kd, projectors=projectors, **source)
        with torch.no_grad():
            losses.append(trainer.compute_loss(model, batch))
        delattr(model, PROJECTORS)
    assert losses[0].item() > 0.5
    torch.testing.assert_close(losses[1], losses[0], atol=2e-3, rtol=0)  # float16 hidden states


def test_dskd_training_updates_projectors_and_saves_a_plain_student(tiny_config, taught, tiny_teacher):
    tiny_config.train.kd = KDConfig(teacher=str(tiny_teacher), loss="dskd", top_k=8)
    taught(tiny_config)
    summary = train(tiny_config)
    assert summary["objective"] == "kd" and summary["kd"]["loss"] == "dskd" and summary["steps"] >= 1
    paths = RunPaths(tiny_config.output_dir)
    with safe_open(paths.model / "model.safetensors", "pt") as saved:
        assert not [key for key in saved.keys() if PROJECTORS in key]
    assert json.loads((paths.teacher_topk / "meta.json").read_text())["hidden_size"] > 0
    load_causal_lm(paths.model)  # loads as the student architecture, no unexpected keys


# --- different tokenizers ------------------------------------------------------------


@pytest.mark.parametrize("loss", ["dskd", "uld", "mined"])
@pytest.mark.parametrize("teacher_logits", ["offline", "online"])
def test_cross_tokenizer_losses_bring_the_student_towards_the_teacher(
    tiny_config, taught, other_teacher, loss, teacher_logits
):
    """Across tokenizers, training on the KD term alone (alpha 1) lowers it: the gradient reaches the
    student and points at the teacher, at rows the teacher's distribution was paired with."""
    tiny_config.train.kd = KDConfig(
        teacher=str(other_teacher), loss=loss, teacher_logits=teacher_logits, top_k=8, alpha=1.0
    )
    tiny_config.train.max_length = 320  # the other tokenizer spends more tokens on the same text
    tiny_config.train.epochs = 6
    tiny_config.train.learning_rate = 3e-3
    taught(tiny_config)
    summary = train(tiny_config)
    log = summary["log"]
    assert summary["objective"] == "kd" and len(log) >= 3
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in log)
    # DSKD's kd is dominated by its projector's CE over the student vocabulary (ln 400 at the start),
    # which falls slowly; its distillation terms are logged on their own.
    term = "s2t_kd" if loss == "dskd" else "kd"
    assert log[0][term] > 0 and log[-1][term] < 0.9 * log[0][term], [entry[term] for entry in log]
    assert log[-1]["kd"] < log[0]["kd"]
    if teacher_logits == "offline":
        meta = json.loads((RunPaths(tiny_config.output_dir).teacher_topk / "meta.json").read_text())
        assert meta["vocab_size"] == len(load_tokenizer(other_teacher))  # recorded in the teacher's own vocabulary
        assert meta["fingerprint"]["teacher_tokenisation"] == "teacher"


def test_cross_tokenizer_batches_carry_both_tokenisations_and_aligned_rows(tiny_model, other_teacher):
    student_tokenizer, teacher_tokenizer = load_tokenizer(tiny_model), load_tokenizer(other_teacher)
    features = []
    for index, (question, answer) in enumerate(EXCHANGES):
        student = tokenize_example(student_tokenizer, None, question, answer, 96)
        teacher = tokenize_example(teacher_tokenizer, None, question, answer, 96)
        n_student = sum(label != -100 for label in student["labels"][1:])
        n_teacher = sum(label != -100 for label in teacher["labels"][1:])
        pairs = min(n_student, n_teacher)
        features.append({
            **student, "index": index, "teacher_input_ids": teacher["input_ids"], "teacher_labels": teacher["labels"],
            "aligned_student": list(range(pairs)), "aligned_teacher": list(range(pairs)),
        })
    batch = KDCollator(student_tokenizer.pad_token_id, teacher_tokenizer.pad_token_id)(features)
    assert batch["teacher_input_ids"].shape[0] == 3 and "teacher_attention_mask" in batch
    student_labels = batch["labels"][:, 1:][batch["labels"][:, 1:] != -100]
    teacher_labels = batch["teacher_labels"][:, 1:][batch["teacher_labels"][:, 1:] != -100]
    # Aligned rows index the flattened response tokens: row i of each side is the i-th token of an example.
    first_student = student_tokenizer.decode(student_labels[batch["aligned_student_rows"][[0]]]).strip()
    first_teacher = teacher_tokenizer.decode(teacher_labels[batch["aligned_teacher_rows"][[0]]]).strip()
    assert first_student and first_teacher and "Full-time".startswith(first_student) and "Full-time".startswith(first_teacher)
    # The second example's rows start after the first example's response tokens on each side.
    first_example = sum(label != -100 for label in features[0]["labels"][1:])
    assert int(batch["aligned_student_rows"][len(features[0]["aligned_student"])]) == first_example
    assert batch["aligned_student_rows"].max() < len(student_labels)
    assert batch["aligned_teacher_rows"].max() < len(teacher_labels)


def test_vocabulary_map_sends_teacher_tokens_to_student_tokens_of_the_same_text(tiny_model, other_teacher):
    student_tokenizer, teacher_tokenizer = load_tokenizer(tiny_model), load_tokenizer(other_teacher)
    mapping = VocabularyMap(student_tokenizer, teacher_tokenizer)
    shared = sorted(set(student_tokenizer.get_vocab()) & set(teacher_tokenizer.get_vocab()) - {"<|pad|>"})[:20]
    teacher_ids = torch.tensor([teacher_tokenizer.convert_tokens_to_ids(token) for token in shared])
    mapped = mapping(teacher_ids)
    assert student_tokenizer.convert_ids_to_tokens(mapped.tolist()) == shared


def test_mined_needs_a_teacher_with_another_tokenizer(tiny_config, taught, tiny_teacher):
    tiny_config.train.kd = KDConfig(teacher=str(tiny_teacher), loss="mined")
    taught(tiny_config)
    with pytest.raises(DomainKDError, match="'mined' does not work with a teacher with the student's tokenizer"):
        train(tiny_config)


# --- on-policy steps -----------------------------------------------------------------


def test_on_policy_needs_the_teacher_online():
    with pytest.raises(DomainKDError, match="on_policy_fraction > 0 needs teacher_logits: online"):
        config_from_dict({"train": {"kd": {"on_policy_fraction": 0.5}}})
    with pytest.raises(DomainKDError, match="works with the vanilla and dskd losses, not uld"):
        config_from_dict({"train": {"kd": {"on_policy_fraction": 0.5, "teacher_logits": "online", "loss": "uld"}}})


def test_student_samples_keep_the_prompt_and_label_only_the_sampled_answer(tmp_path, student, tiny_teacher):
    model, tokenizer = student
    teacher = load_causal_lm(tiny_teacher)[0]
    kd = KDConfig(teacher_logits="online", on_policy_fraction=1.0, on_policy_max_new_tokens=6)
    trainer = make_trainer(tmp_path, model, kd, teacher=teacher, pad_token_id=tokenizer.pad_token_id)
    batch = KDCollator(tokenizer.pad_token_id)(same_tokenizer_examples(tokenizer))
    torch.manual_seed(0)
    sampled = trainer._student_samples(model, batch)
    for row in range(len(EXCHANGES)):
        prompt_length = int((batch["labels"][row] == -100).logical_and(batch["attention_mask"][row] == 1).sum())
        length = int(sampled["attention_mask"][row].sum())
        assert torch.equal(sampled["input_ids"][row, :prompt_length], batch["input_ids"][row, :prompt_length])
        assert (sampled["labels"][row, :prompt_length] == -100).all()
        answer = sampled["labels"][row, prompt_length:length]
        assert 1 <= len(answer) <= 6 and (answer != -100).all()
        assert torch.equal(answer, sampled["input_ids"][row, prompt_length:length])
    assert model.training  # generation switched it to eval and back


def test_on_policy_steps_train_on_the_divergence_alone(tmp_path, student, tiny_teacher):
    """GKD: on the student's own samples, no (1 − α)·CE term (it would reinforce whatever was sampled)."""
    model, tokenizer = student
    model.train()
    teacher = load_causal_lm(tiny_teacher)[0]
    pad = tokenizer.pad_token_id
    on_policy_kd = KDConfig(teacher_logits="online", on_policy_fraction=1.0, alpha=0.3, on_policy_max_new_tokens=6)
    trainer = make_trainer(tmp_path / "on", model, on_policy_kd, teacher=teacher, pad_token_id=pad)
    batch = KDCollator(pad)(same_tokenizer_examples(tokenizer))
    torch.manual_seed(0)
    sampled = trainer._student_samples(model, batch)
    trainer._student_samples = lambda model, inputs: sampled  # the same samples for the comparison below

    def off_policy_loss(alpha):
        other = make_trainer(tmp_path / f"off{alpha}", model, KDConfig(teacher_logits="online", alpha=alpha),
                             teacher=teacher, pad_token_id=pad)
        return other.compute_loss(model, sampled)

    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        divergence_only, with_ce = off_policy_loss(1.0), off_policy_loss(0.3)
    torch.testing.assert_close(loss, divergence_only)
    assert abs(loss.item() - with_ce.item()) > 1e-3


def test_on_policy_steps_are_drawn_per_optimizer_step_from_the_seed(tmp_path, student, tiny_teacher):
    model, tokenizer = student
    teacher = load_causal_lm(tiny_teacher)[0]
    kd = KDConfig(teacher_logits="online", on_policy_fraction=0.5)
    trainer = make_trainer(tmp_path, model, kd, teacher=teacher, pad_token_id=tokenizer.pad_token_id)
    draws = []
    for step in range(40):
        trainer.state.global_step = step
        draws.append((trainer._on_policy_step(), trainer._on_policy_step()))
    assert all(first == second for first, second in draws)  # every micro-batch of a step agrees, and a resume too
    assert 10 <= sum(first for first, _ in draws) <= 30


def test_on_policy_with_another_tokenizer_and_dskd_with_lora_stop_before_training(tiny_config, taught, other_teacher):
    taught(tiny_config)
    tiny_config.train.kd = KDConfig(teacher=str(other_teacher), loss="dskd", teacher_logits="online", on_policy_fraction=0.5)
    with pytest.raises(DomainKDError, match="on-policy steps need a teacher with the student's vocabulary"):
        train(tiny_config)
    tiny_config.train.kd = KDConfig(teacher=str(other_teacher), loss="dskd")
    tiny_config.train.method = "lora"
    with pytest.raises(DomainKDError, match="use train.method: full with dskd"):
        train(tiny_config)
    assert not RunPaths(tiny_config.output_dir).checkpoints.exists()


def test_projectors_train_in_their_own_optimizer_group(tmp_path, student, tiny_teacher):
    model, _ = student
    teacher = load_causal_lm(tiny_teacher)[0]
    projectors = DSKDProjectors(model.config.hidden_size, teacher.config.hidden_size, cross_attention=False)
    trainer = make_trainer(tmp_path, model, KDConfig(loss="dskd", projector_learning_rate=3e-3), teacher=teacher,
                           projectors=projectors)
    try:
        optimizer = trainer.create_optimizer()
        projector_ids = {id(parameter) for parameter in projectors.parameters()}
        groups = [{id(parameter) for parameter in group["params"]} for group in optimizer.param_groups]
        assert groups[-1] == projector_ids and optimizer.param_groups[-1]["lr"] == 3e-3
        assert all(not group & projector_ids for group in groups[:-1])
        student_ids = {id(parameter) for parameter in model.parameters()} - projector_ids
        assert set().union(*groups[:-1]) == student_ids
    finally:
        delattr(model, PROJECTORS)
