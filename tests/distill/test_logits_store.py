import json
import math

import numpy as np
import pytest
import torch

from domainkd.distill import (
    IGNORE_INDEX,
    TopKStore,
    TopKStoreWriter,
    bytes_per_token,
    forward_kl,
    pack_ids,
    record_teacher_topk,
    topk_divergence,
    topk_from_logits,
    unpack_ids,
)
from domainkd.errors import DomainKDError
from domainkd.models import load_causal_lm

FINGERPRINT = {"teacher": "tiny", "train_sha256": "abc123"}
FP16_ATOL = 5e-3  # float16 spacing is 2**-8 for |values| in [4, 8): log-probs of a 400-token vocabulary


def random_topk(tokens, k, vocab_size, seed):
    logits = torch.randn(tokens, vocab_size, generator=torch.Generator().manual_seed(seed)) * 3
    return topk_from_logits(logits, k)


def assert_same_topk(stored, expected):
    (ids, logprobs, log_tail), (expected_ids, expected_logprobs, expected_log_tail) = stored, expected
    assert ids.dtype == torch.long and logprobs.dtype == log_tail.dtype == torch.float32
    assert torch.equal(ids, expected_ids)
    torch.testing.assert_close(logprobs, expected_logprobs, atol=FP16_ATOL, rtol=1e-3)
    torch.testing.assert_close(log_tail, expected_log_tail, atol=FP16_ATOL, rtol=1e-3)


def write_store(directory, examples, k, vocab_size, **kwargs):
    with TopKStoreWriter(directory, k, vocab_size, fingerprint=FINGERPRINT, **kwargs) as writer:
        for example in examples:
            writer.append(*example)
    return TopKStore(directory)


# --- packing and sizes -----------------------------------------------------------------


@pytest.mark.parametrize("vocab_size", [2, 49152, 151936, 262144, 2**20])
@pytest.mark.parametrize("k", [1, 7, 64])
def test_pack_unpack_round_trip_is_exact(vocab_size, k):
    bits = max(1, math.ceil(math.log2(vocab_size)))
    ids = np.random.default_rng(vocab_size + k).integers(0, vocab_size, size=(13, k))
    ids[0], ids[1] = vocab_size - 1, 0  # the extremes
    packed = pack_ids(ids, bits)
    assert packed.dtype == np.uint8 and packed.shape == (13, math.ceil(k * bits / 8))
    np.testing.assert_array_equal(unpack_ids(packed, k, bits), ids)
    assert unpack_ids(pack_ids(ids[:0], bits), k, bits).shape == (0, k)


def test_bytes_per_token():
    assert bytes_per_token(64, 49_152) == 258  # 16-bit ids
    assert bytes_per_token(64, 262_144) == 274  # 18-bit ids
    assert max(bytes_per_token(64, 49_152), bytes_per_token(64, 262_144)) <= 300


# --- writer and reader -----------------------------------------------------------------


@pytest.mark.parametrize("k", [5, 50])
def test_store_round_trip_and_size(tmp_path, k):
    vocab_size = 50
    examples = [random_topk(n, k, vocab_size, seed) for seed, n in enumerate([4, 0, 9])]
    examples[2] = tuple(part.numpy() for part in examples[2])  # arrays are accepted as well as tensors
    store = write_store(tmp_path / "store", examples, k, vocab_size)

    assert len(store) == 3 and store.meta["tokens_done"] == 13 and store.meta["fingerprint"] == FINGERPRINT
    for index, example in enumerate(examples):
        assert_same_topk(store[index], tuple(torch.as_tensor(part) for part in example))
    assert store[1][0].shape == (0, k)
    if k == vocab_size:
        assert (store[0][2] == -math.inf).all()  # nothing outside the top k
    data_bytes = sum((tmp_path / "store" / name).stat().st_size for name in ["ids.bin", "logprobs.f16", "log_tail.f16"])
    assert data_bytes == 13 * store.bytes_per_token
    assert (tmp_path / "store" / "offsets.i64").stat().st_size == 4 * 8
    with pytest.raises(IndexError):
        store[3]


def test_log_tail_keeps_masses_that_underflow_float16(tmp_path):
    # Two likely tokens and eight whose total mass is 1e-9, below float16's smallest subnormal.
    tail_logit = math.log(1e-9 / 8 * 2)
    logits = torch.tensor([[0.0, 0.0] + [tail_logit] * 8])
    ids, logprobs, log_tail = topk_from_logits(logits, k=2)
    assert torch.tensor(1e-9).half() == 0
    store = write_store(tmp_path / "store", [(ids, logprobs, log_tail)], k=2, vocab_size=10)
    stored_log_tail = store[0][2]
    assert torch.isfinite(stored_log_tail).all()
    assert stored_log_tail.item() == pytest.approx(math.log(1e-9), abs=0.02)


def test_writer_resumes_after_a_kill(tmp_path):
    directory, k, vocab_size = tmp_path / "store", 4, 30
    examples = [random_topk(n, k, vocab_size, seed) for seed, n in enumerate([3, 1, 4, 1, 5])]
    writer = TopKStoreWriter(directory, k, vocab_size, fingerprint=FINGERPRINT, flush_every=2)
    for example in examples:
        writer.append(*example)  # flushed after the 2nd and 4th; the 5th is written but not in meta
    del writer  # killed: files closed without a final flush
    with (directory / "ids.bin").open("ab") as handle:
        handle.write(b"\x07" * 5)  # a half-written row
    row_bytes = math.ceil(k * 5 / 8)  # 5 bits for 30 ids
    assert (directory / "ids.bin").stat().st_size == 14 * row_bytes + 5

    assert json.loads((directory / "meta.json").read_text())["examples_done"] == 4
    assert len(TopKStore(directory)) == 4  # readable meanwhile: only the described examples
    with TopKStoreWriter(directory, k, vocab_size, fingerprint=dict(FINGERPRINT), flush_every=2) as writer:
        assert writer.examples_done == 4
        writer.append(*examples[4])

    store = TopKStore(directory)
    assert len(store) == 5 and store.meta["tokens_done"] == 14
    assert (directory / "ids.bin").stat().st_size == 14 * row_bytes  # garbage and duplicate gone
    for index, example in enumerate(examples):
        assert_same_topk(store[index], example)


def test_writer_refuses_a_store_of_other_inputs(tmp_path):
    directory = tmp_path / "store"
    write_store(directory, [random_topk(2, 4, 30, seed=0)], k=4, vocab_size=30)
    with pytest.raises(DomainKDError, match="other inputs .*fingerprint.*delete it"):
        TopKStoreWriter(directory, 4, 30, fingerprint={"teacher": "other"})
    with pytest.raises(DomainKDError, match="different k"):
        TopKStoreWriter(directory, 8, 30, fingerprint=FINGERPRINT)
    with TopKStoreWriter(directory, 4, 30, fingerprint={"teacher": "other"}, reset=True) as writer:
        assert writer.examples_done == 0
    assert len(TopKStore(directory)) == 0


def test_writer_refuses_a_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DomainKDError, match="not a top-k logits store"):
        TopKStoreWriter(tmp_path, 4, 30, fingerprint=FINGERPRINT)


def test_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(DomainKDError, match="meta.json is missing"):
        TopKStore(tmp_path / "missing")
    directory = tmp_path / "store"
    write_store(directory, [random_topk(3, 4, 30, seed=0)], k=4, vocab_size=30)
    with (directory / "logprobs.f16").open("r+b") as handle:
        handle.truncate(10)
    with pytest.raises(DomainKDError, match="logprobs.f16 holds 10 bytes .* incomplete or corrupt"):
        TopKStore(directory)
    (directory / "meta.json").write_text("{")
    with pytest.raises(DomainKDError, match="not a valid store description"):
        TopKStore(directory)


# --- recording from a teacher ----------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tiny_model):
    return load_causal_lm(str(tiny_model))


@pytest.fixture(scope="module")
def examples(teacher):
    _, tokenizer = teacher
    texts = [
        "Question: What is it? Answer: It is 27 days.",
        "The car park opens at 06:40.",
        "Lost badges are reported on extension 4190 within 2 hours. Replacement badges cost 15 euros.",
    ]
    rows = []
    for prompt_length, text in zip([4, 2, 6], texts):
        input_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": input_ids, "labels": [IGNORE_INDEX] * prompt_length + input_ids[prompt_length:]})
    return rows


def response_logits(model, example):
    """The teacher logits of one example's response tokens, from an unpadded forward: ``(n, V)``."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([example["input_ids"]])).logits[0]  # (T, V)
    targets = [t for t, label in enumerate(example["labels"]) if label != IGNORE_INDEX and t >= 1]
    return logits[[t - 1 for t in targets]]


@pytest.mark.parametrize(("k", "temperature"), [(None, 1.0), (5, 2.0)])
def test_record_matches_an_unpadded_forward_per_example(tmp_path, teacher, examples, k, temperature):
    model, tokenizer = teacher
    vocab_size = model.config.vocab_size
    k = k or vocab_size
    store = record_teacher_topk(
        model, examples, tmp_path / "store", k, fingerprint=FINGERPRINT, temperature=temperature,
        batch_size=2, pad_token_id=tokenizer.pad_token_id, progress=False,
    )
    assert len(store) == 3 and store.meta["temperature"] == temperature
    for index, example in enumerate(examples):
        ids, logprobs, log_tail = store[index]
        teacher_logits = response_logits(model, example)
        expected_logprobs = torch.log_softmax(teacher_logits / temperature, -1)  # (n, V)
        assert ids.shape == (len(teacher_logits), k)
        # Compared by value, not by id order, so near-ties reordered by padding cannot fail the test.
        torch.testing.assert_close(logprobs, expected_logprobs.gather(-1, ids), atol=FP16_ATOL, rtol=0)
        torch.testing.assert_close(logprobs, expected_logprobs.topk(k).values, atol=FP16_ATOL, rtol=0)
        expected_log_tail = topk_from_logits(teacher_logits, k, temperature)[2]
        torch.testing.assert_close(log_tail, expected_log_tail, atol=FP16_ATOL, rtol=0)


def test_stored_full_vocabulary_gives_the_full_divergence(tmp_path, teacher, examples):
    model, _ = teacher
    vocab_size = model.config.vocab_size
    store = record_teacher_topk(
        model, examples, tmp_path / "store", k=vocab_size, fingerprint=FINGERPRINT, progress=False
    )
    for index, example in enumerate(examples):
        teacher_logits = response_logits(model, example)
        student_logits = torch.randn(teacher_logits.shape, generator=torch.Generator().manual_seed(index))
        full = forward_kl(student_logits, teacher_logits)
        from_store = topk_divergence(student_logits, *store[index])
        torch.testing.assert_close(from_store, full, atol=1e-2, rtol=0)


def test_record_resumes_without_recomputing(tmp_path, teacher, examples, monkeypatch):
    model, _ = teacher

    def record(rows, name):
        return record_teacher_topk(model, rows, tmp_path / name, k=7, fingerprint=FINGERPRINT, progress=False)

    one_shot = record(examples, "one-shot")
    forwarded_rows, forward = [], model.forward

    def counting_forward(**inputs):
        forwarded_rows.append(len(inputs["input_ids"]))
        return forward(**inputs)

    monkeypatch.setattr(model, "forward", counting_forward)
    record(examples[:2], "resumed")
    assert forwarded_rows == [2]
    resumed = record(examples, "resumed")
    assert forwarded_rows == [2, 1]  # only the third example reached the teacher
    assert len(resumed) == len(one_shot) == 3
    for index in range(3):
        resumed_ids, resumed_logprobs, resumed_log_tail = resumed[index]
        one_shot_ids, one_shot_logprobs, one_shot_log_tail = one_shot[index]
        torch.testing.assert_close(resumed_logprobs, one_shot_logprobs, atol=FP16_ATOL, rtol=0)
        torch.testing.assert_close(resumed_log_tail, one_shot_log_tail, atol=FP16_ATOL, rtol=0)
        assert (resumed_ids == one_shot_ids).float().mean() > 0.95  # equal but for near-ties
    with pytest.raises(DomainKDError, match="already holds 3 examples"):
        record(examples[:1], "resumed")


def test_tail_samples_round_trip_and_size(tmp_path):
    ids, logprobs, log_tail = random_topk(5, 4, vocab_size=300, seed=0)
    tail_ids = torch.randint(300, (5, 3), generator=torch.Generator().manual_seed(1))
    entropy = torch.rand(5) * 4
    with TopKStoreWriter(tmp_path / "s", 4, 300, fingerprint=FINGERPRINT, tail_samples=3) as writer:
        with pytest.raises(ValueError, match="pass tail exactly when > 0"):
            writer.append(ids, logprobs, log_tail)
        writer.append(ids, logprobs, log_tail, tail=(tail_ids, entropy))
    store = TopKStore(tmp_path / "s")
    stored_ids, stored_entropy = store.tail(0)
    assert torch.equal(stored_ids, tail_ids)
    torch.testing.assert_close(stored_entropy, entropy, atol=FP16_ATOL, rtol=1e-3)
    assert store.bytes_per_token == bytes_per_token(4, 300) + math.ceil(3 * 9 / 8) + 2
    on_disk = sum(path.stat().st_size for path in (tmp_path / "s").iterdir() if path.suffix != ".json" and path.name != "offsets.i64")
    assert on_disk == 5 * store.bytes_per_token


def test_record_with_tail_samples_draws_from_the_tail_and_resumes_identically(tmp_path, teacher, examples):
    model, _ = teacher

    def record(rows, name):
        return record_teacher_topk(
            model, rows, tmp_path / name, k=5, fingerprint=FINGERPRINT, progress=False, tail_samples=4, seed=7, batch_size=2
        )

    one_shot = record(examples, "one-shot")
    record(examples[:1], "resumed")
    resumed = record(examples, "resumed")
    for index in range(len(examples)):
        (ids, _, _), (tail_ids, _) = one_shot[index], one_shot.tail(index)
        assert tail_ids.shape == (len(ids), 4) and not (tail_ids[:, :, None] == ids[:, None, :]).any()
        assert torch.equal(resumed.tail(index)[0], tail_ids)
    assert one_shot.meta["tail_samples"] == 4


def test_bytes_per_token_with_eight_tail_samples_stays_under_300_for_large_vocabularies():
    assert bytes_per_token(64, 49_152, tail_samples=8) == 276
    assert bytes_per_token(64, 262_144, tail_samples=8) == 294
