"""Does distillation teach the teacher? KD runs on tiny models, judged on examples they never trained on.

Each test trains the same student from the same start, on the same batches, for the same steps,
once with the plain SFT loss (``alpha = 0``) and once with KD, and compares the student's forward
KL to the teacher on held-out answers. A KD loss that silently trained on the labels alone (a
dropped term, a wrong sign, the teacher's distribution at the wrong rows) would tie with SFT.
"""

import pytest
import torch
import torch.nn.functional as F
from transformers import TrainingArguments

from domainkd.config import KDConfig
from domainkd.distill import record_teacher_topk
from domainkd.distill.dskd import DSKDProjectors
from domainkd.distill.trainer import PROJECTORS, KDCollator, KDTrainer
from domainkd.models import load_causal_lm
from domainkd.training.collate import tokenize_example

SUBJECTS = ["annual leave", "badge renewals", "the car park", "lab safety", "travel claims", "the library",
            "parental leave", "overtime", "the canteen", "expenses", "fire drills", "remote work"]
STEPS = 40


def exchanges(subjects, offset):
    return [(f"What does the handbook say about {subject}?",
             f"For {subject}, staff follow rule {index + offset}: ask the office within {index + 3} days.")
            for index, subject in enumerate(subjects)]


@pytest.fixture(scope="module")
def data(tiny_model):
    _, tokenizer = load_causal_lm(tiny_model)
    def tokenize(pairs):
        return [{**tokenize_example(tokenizer, None, question, answer, max_length=96), "index": index}
                for index, (question, answer) in enumerate(pairs)]
    train, held_out = tokenize(exchanges(SUBJECTS[:8], 1)), tokenize(exchanges(SUBJECTS[8:], 20))
    return train, held_out, tokenizer.pad_token_id


def held_out_kl(student, teacher, examples, pad_token_id):
    """Mean forward KL(teacher ‖ student) per held-out response token, over the whole vocabulary."""
    batch = KDCollator(pad_token_id)(examples)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    response = batch["labels"][:, 1:] != -100
    with torch.no_grad():
        student_logprobs = student(**inputs).logits[:, :-1][response].log_softmax(-1)
        teacher_logprobs = teacher(**inputs).logits[:, :-1][response].log_softmax(-1)
    return F.kl_div(student_logprobs, teacher_logprobs, log_target=True, reduction="batchmean").item()


def trained(tmp_path, tiny_model, kd, train_examples, pad_token_id, **teacher_or_store):
    """A fresh copy of the student after STEPS steps of ``kd`` (alpha 0 is plain SFT)."""
    student = load_causal_lm(tiny_model)[0]
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", seed=0, max_steps=STEPS, learning_rate=3e-3,
        per_device_train_batch_size=4, lr_scheduler_type="constant", save_strategy="no", logging_steps=10,
        disable_tqdm=True, data_seed=0, remove_unused_columns=False,
    )
    trainer = KDTrainer(model=student, args=args, kd=kd, train_dataset=train_examples,
                        data_collator=KDCollator(pad_token_id), **teacher_or_store)
    trainer.train()
    if hasattr(student, PROJECTORS):
        delattr(student, PROJECTORS)
    return student.eval(), trainer


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_online_kd_lowers_the_held_out_kl_to_the_teacher_more_than_sft(tmp_path, tiny_model, tiny_teacher, data, divergence):
    train_examples, held_out, pad = data
    teacher = load_causal_lm(tiny_teacher)[0].eval()
    start = held_out_kl(load_causal_lm(tiny_model)[0].eval(), teacher, held_out, pad)
    sft, _ = trained(tmp_path / "sft", tiny_model, KDConfig(teacher_logits="online", alpha=0.0), train_examples, pad,
                     teacher=teacher)
    kd_config = KDConfig(teacher_logits="online", alpha=0.9, divergence=divergence)
    kd, _ = trained(tmp_path / "kd", tiny_model, kd_config, train_examples, pad, teacher=teacher)
    sft_kl, kd_kl = held_out_kl(sft, teacher, held_out, pad), held_out_kl(kd, teacher, held_out, pad)
    # measured: start 2.92, SFT 4.23 (it learns the labels, not the teacher), forward KL 2.45, reverse KL 2.82
    assert kd_kl < start and kd_kl < 0.75 * sft_kl, f"start {start:.3f}, SFT {sft_kl:.3f}, KD {kd_kl:.3f} nats/token"


def test_offline_kd_from_the_store_lowers_the_held_out_kl_as_online_kd_does(tmp_path, tiny_model, tiny_teacher, data):
    """The recorded top-k (with tail draws) teaches about as well as the teacher in memory."""
    train_examples, held_out, pad = data
    teacher = load_causal_lm(tiny_teacher)[0].eval()
    store = record_teacher_topk(teacher, train_examples, tmp_path / "store", 16, fingerprint={}, pad_token_id=pad,
                                progress=False, tail_samples=8)
    sft, _ = trained(tmp_path / "sft", tiny_model, KDConfig(alpha=0.0), train_examples, pad, store=store)
    offline, _ = trained(tmp_path / "off", tiny_model, KDConfig(alpha=0.9, top_k=16), train_examples, pad, store=store)
    online, _ = trained(tmp_path / "on", tiny_model, KDConfig(teacher_logits="online", alpha=0.9), train_examples, pad,
                        teacher=teacher)
    sft_kl, offline_kl, online_kl = (held_out_kl(model, teacher, held_out, pad) for model in (sft, offline, online))
    assert offline_kl < 0.8 * sft_kl, f"SFT {sft_kl:.3f}, offline KD {offline_kl:.3f} nats/token"
    assert offline_kl < 1.25 * online_kl, f"offline {offline_kl:.3f} against online {online_kl:.3f} nats/token"


def test_dskd_trains_its_projectors_and_lowers_the_held_out_kl(tmp_path, tiny_model, tiny_teacher, data):
    train_examples, held_out, pad = data
    teacher = load_causal_lm(tiny_teacher)[0].eval()
    student_config = load_causal_lm(tiny_model)[0].config
    sft, _ = trained(tmp_path / "sft", tiny_model, KDConfig(teacher_logits="online", alpha=0.0), train_examples, pad,
                     teacher=teacher)
    torch.manual_seed(0)
    projectors = DSKDProjectors(student_config.hidden_size, teacher.config.hidden_size, cross_attention=False)
    before = {name: value.clone() for name, value in projectors.state_dict().items()}
    kd = KDConfig(teacher_logits="online", loss="dskd", alpha=0.9)
    dskd, trainer = trained(tmp_path / "dskd", tiny_model, kd, train_examples, pad, teacher=teacher,
                            projectors=projectors)
    assert all(not torch.equal(before[name], value) for name, value in projectors.state_dict().items())
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert {"t2s_ce", "t2s_kd", "s2t_kd", "t2s_accuracy"} <= set(logged[-1])  # DSKD's own terms reach the log
    assert logged[-1]["t2s_ce"] < logged[0]["t2s_ce"]  # the projector learns to read the teacher's states
    sft_kl, dskd_kl = held_out_kl(sft, teacher, held_out, pad), held_out_kl(dskd, teacher, held_out, pad)
    assert dskd_kl < 0.8 * sft_kl, f"SFT {sft_kl:.3f}, DSKD {dskd_kl:.3f} nats/token"
