import math

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from domainkd.distill import (
    DIVERGENCES,
    IGNORE_INDEX,
    divergence_from_logprobs,
    merge_duplicate_ids,
    mined_kd_loss,
    topk_from_logits,
    topk_kd_loss,
    uld_distance,
    uld_loss,
)
from domainkd.distill.align import VocabularyMap, align_tokens, levenshtein, token_bytes, token_texts
from tests.distill.tensors import labels_for, logits, logprobs_of

NAMES = sorted(DIVERGENCES)
CORPUS = [
    "The cat sat on the mat, and the cats sat on the mats.",
    "Unbelievable stories about cats, dogs and other animals.",
    "def add(x, y):\n    return x + y\n",
    "The distillation of knowledge from a teacher into a student.",
] * 4


# --- tokenizers built in the test ----------------------------------------------------------


def byte_level_tokenizer(vocab_size):
    """A GPT-2-style byte-level BPE (as SmolLM2 and Qwen2.5)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|im_end|>"], initial_alphabet=alphabet)
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>")


def sentencepiece_style_tokenizer(vocab_size):
    """A BPE spelling spaces as ``▁`` (as Llama 2 and Mistral)."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<|im_end|>"])
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", unk_token="<unk>")


def word_level_tokenizer(words, metaspace=False):
    """A tokenizer whose vocabulary is exactly ``words`` (id = position), for controlled mappings."""
    tokenizer = Tokenizer(models.WordLevel({word: index for index, word in enumerate(words)}, unk_token=words[0]))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if metaspace:
        tokenizer.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token=words[0])


@pytest.fixture(scope="module")
def tiny_tokenizers():
    """(student, teacher): a 300-token byte-level BPE and a 200-token sentencepiece-style one."""
    return byte_level_tokenizer(300), sentencepiece_style_tokenizer(200)


def real_tokenizer(names):
    """The tokenizer of the first of ``names`` already in domainkd's model cache, else skip."""
    from domainkd.models.cache import cache_dir, is_cached
    from transformers import AutoTokenizer

    for name in names:
        if is_cached(name):
            return AutoTokenizer.from_pretrained(cache_dir() / "models" / name)
    pytest.skip(f"none of {', '.join(names)} is in the domainkd cache (no fetching in tests)")


@pytest.fixture(scope="module")
def real_tokenizers():
    """(student, teacher): SmolLM2 and Qwen2.5, when both are cached."""
    return real_tokenizer(["smollm2-135m-instruct"]), real_tokenizer(
        ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
    )


# --- token texts -----------------------------------------------------------------------------


def test_byte_level_texts_read_as_the_decoded_string(tiny_tokenizers):
    student, _ = tiny_tokenizers
    text = "The cats sat.\n    return x + y"
    texts = token_texts(student, student.encode(text))
    assert "".join(texts) == text
    assert not any(marker in "".join(texts) for marker in "ĠĊ")


def test_a_lone_utf8_byte_reads_as_a_replacement_character(tiny_tokenizers):
    student, _ = tiny_tokenizers
    lead_byte = student.convert_tokens_to_ids("ä")  # byte-level spelling of the byte 0xE4, not of 'ä'
    assert token_texts(student, [lead_byte]) == ["\ufffd"]
    assert token_texts(student, torch.tensor([lead_byte, len(student) + 10])) == ["\ufffd", ""]


def test_sentencepiece_texts_turn_the_marker_into_spaces(tiny_tokenizers):
    _, teacher = tiny_tokenizers
    text = "The cats sat.\n  return x"
    assert "".join(token_texts(teacher, teacher.encode(text))) == " " + text  # sentencepiece's leading space


def test_sentencepiece_byte_tokens_and_added_tokens():
    tokenizer = word_level_tokenizer(["<unk>", "<0x0A>", "▁hi", "<0xE4>"], metaspace=True)
    tokenizer.add_special_tokens({"eos_token": "<|im_end|>"})
    assert token_texts(tokenizer, [1, 2, 3, tokenizer.eos_token_id]) == ["\n", " hi", "\ufffd", "<|im_end|>"]


# --- edit distances and sequence alignment ---------------------------------------------------


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("same", "same") == 0
    assert levenshtein("kitten", "sitting", bound=1) == 2  # cut short: only "more than 1"
    assert levenshtein("kitten", "sitting", bound=3) == 3


def test_identical_sequences_align_on_the_diagonal():
    texts = ["The", " cat", " sat", ".", "\n"]
    assert align_tokens(texts, list(texts)) == [(i, i) for i in range(5)]


def test_tokens_pair_only_where_they_start_at_the_same_place():
    """Edit-distance alignment paired "7" with " 27" and "believ" with "unbelievable": the student
    would learn the teacher's next token after a different prefix. Now only tokens that start
    together pair: the same token, or the first piece of a word the other side keeps whole."""
    assert align_tokens([" The", " 2", "7", " days"], [" The", " 27", " days"]) == [(0, 0), (1, 1), (3, 2)]
    split, whole = ["un", "believ", "able", " story"], ["unbelievable", " story"]
    assert align_tokens(split, whole) == [(0, 0), (3, 1)]
    assert align_tokens(whole, split) == [(0, 0), (1, 3)]
    assert align_tokens([" ca", "ts"], [" cat", "s"]) == [(0, 0)]  # "ts" and "s" start apart


def test_whitespace_tokens_pair_only_with_their_twin():
    assert align_tokens(["a", "\n", "\n", "b"], ["a", "\n\n", "b"]) == [(0, 0), (3, 2)]
    assert align_tokens(["a", "\n", "\n", "b"], ["a", "\n", "\n", "b"]) == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_a_character_split_into_bytes_keeps_later_tokens_in_place():
    """By bytes, an emoji one side spells in four byte tokens and the other whole takes the same width."""
    emoji = "😀".encode()
    student = [b"I", b" like", *(emoji[i : i + 1] for i in range(4)), b" cats"]
    teacher = [b"I", b" like", emoji, b" cats"]
    assert align_tokens(student, teacher) == [(0, 0), (1, 1), (2, 2), (6, 3)]


def test_leading_spaces_do_not_count():
    assert align_tokens([" hello", " world"], ["hello", "world"]) == [(0, 0), (1, 1)]


def test_empty_sequences_align_to_nothing():
    assert align_tokens([], []) == []
    assert align_tokens([], ["a", "b"]) == []
    assert align_tokens(["a"], []) == []


def _same_prefix(student, teacher, student_ids, teacher_ids, pairs):
    """Whether every pair's two tokens follow the same text (whitespace aside)."""
    def before(tokenizer, ids, index):
        return "".join(token_texts(tokenizer, ids[:index])).replace(" ", "").replace("\n", "")

    return all(before(student, student_ids, i) == before(teacher, teacher_ids, j) for i, j in pairs)


def test_two_tokenizations_pair_after_the_same_prefix_and_mostly(tiny_tokenizers):
    student, teacher = tiny_tokenizers
    text = "Unbelievable: the cat sat on the mats.\ndef add(x, y):\n    return x + y"
    student_ids, teacher_ids = student.encode(text), teacher.encode(text)
    pairs = align_tokens(token_bytes(student, student_ids), token_bytes(teacher, teacher_ids))
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(pairs, pairs[1:]))
    assert _same_prefix(student, teacher, student_ids, teacher_ids, pairs)
    assert len(pairs) >= min(len(student_ids), len(teacher_ids)) // 2


# --- vocabulary map --------------------------------------------------------------------------


STUDENT_WORDS = ["<unk>", " the", "the", " cat", " cats", " catalogue", "unbelievably", "x", "y"]
TEACHER_WORDS = ["<unk>", " cats", " catalog", "unbelievable", "the", " dog", "z"]


def test_vocabulary_map_exact_and_closest():
    vocab_map = VocabularyMap(word_level_tokenizer(STUDENT_WORDS), word_level_tokenizer(TEACHER_WORDS))
    mapped = vocab_map(torch.tensor([[1, 2, 3], [4, 1, 1]]))
    assert mapped.dtype == torch.long and mapped.shape == (2, 3)
    assert mapped.tolist() == [[4, 5, 6], [2, 4, 4]]  # " cats" exact; " catalogue", "unbelievably" closest; "the" exact


def test_vocabulary_map_ties_go_to_the_lower_id_and_misses_fall_back():
    vocab_map = VocabularyMap(word_level_tokenizer(STUDENT_WORDS), word_level_tokenizer(TEACHER_WORDS))
    assert vocab_map.closest(" cot") == 3  # " cat" (distance 1) before " cats" (distance 2)
    assert vocab_map.closest("xy") == 7  # "x" and "y" both at distance 1
    assert vocab_map.closest(" dog") == 0  # nothing shares " d": the student's own first token, <unk>


def test_vocabulary_map_is_lazy_and_cached(monkeypatch):
    vocab_map = VocabularyMap(word_level_tokenizer(STUDENT_WORDS), word_level_tokenizer(TEACHER_WORDS))
    asked = []
    closest = vocab_map.closest
    monkeypatch.setattr(vocab_map, "closest", lambda text: asked.append(text) or closest(text))
    vocab_map(torch.tensor([1, 2, 1]))
    vocab_map(torch.tensor([[2, 3]]))
    assert asked == [" cats", " catalog", "unbelievable"]
    assert vocab_map(torch.tensor([], dtype=torch.long)).shape == (0,)


def test_vocabulary_map_between_trained_tokenizers(tiny_tokenizers):
    student, teacher = tiny_tokenizers
    vocab_map = VocabularyMap(student, teacher)
    teacher_ids = torch.arange(len(teacher))
    student_ids = vocab_map(teacher_ids)
    assert ((student_ids >= 0) & (student_ids < len(student))).all()
    student_vocab = set(token_texts(student, range(len(student))))
    teacher_texts, mapped_texts = token_texts(teacher, teacher_ids), token_texts(student, student_ids)
    for teacher_text, mapped_text in zip(teacher_texts, mapped_texts):
        if teacher_text in student_vocab:
            assert mapped_text == teacher_text
        elif teacher_text:
            assert levenshtein(teacher_text, mapped_text) < len(teacher_text)
    assert sum(text in student_vocab for text in teacher_texts) > len(teacher) // 2


# --- the real tokenizers (only when already cached) ----------------------------------------


def test_real_texts_read_as_the_string(real_tokenizers):
    text = "Hello world!\n    def f(x):\n        return x  # café, naïve\n"
    for tokenizer in real_tokenizers:
        assert "".join(token_texts(tokenizer, tokenizer.encode(text, add_special_tokens=False))) == text
    for tokenizer in real_tokenizers:  # SmolLM2 splits this emoji into bytes: pieces read "�", no crash
        assert all(isinstance(piece, str) for piece in token_texts(tokenizer, tokenizer.encode("😀 中文")))


def test_real_qwen_tokens_map_to_smollm2(real_tokenizers):
    student, teacher = real_tokenizers
    vocab_map = VocabularyMap(student, teacher)
    text = "The student learns from the teacher.<|im_end|>"
    teacher_ids = torch.tensor(teacher.encode(text, add_special_tokens=False))
    mapped_texts = token_texts(student, vocab_map(teacher_ids))
    assert mapped_texts == token_texts(teacher, teacher_ids)
    teacher_ids = torch.tensor(teacher.encode(".overlay"))  # one Qwen token, no SmolLM2 token
    assert token_texts(teacher, teacher_ids) == [".overlay"] and ".overlay" not in student.get_vocab()
    assert token_texts(student, vocab_map(teacher_ids)) == ["overlay"]


def test_real_alignment(real_tokenizers):
    student, teacher = real_tokenizers
    text = "Knowledge distillation trains a small student on a large teacher's distributions: 27 days, 3.5 €.\n" * 3
    student_ids, teacher_ids = student.encode(text), teacher.encode(text)
    pairs = align_tokens(token_bytes(student, student_ids), token_bytes(teacher, teacher_ids))
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(pairs, pairs[1:]))
    assert _same_prefix(student, teacher, student_ids, teacher_ids, pairs)
    student_texts, teacher_texts = token_texts(student, student_ids), token_texts(teacher, teacher_ids)
    exact = sum(student_texts[i] == teacher_texts[j] for i, j in pairs)
    assert exact >= 0.7 * min(len(student_texts), len(teacher_texts))


# --- ULD ---------------------------------------------------------------------------------------


def full_sorted_l1(student_logits, teacher_logits, temperature=1.0):
    """ULD by brute force: both distributions zero-padded to one size, sorted, L1."""
    student, teacher = (logits_.double().div(temperature).softmax(-1) for logits_ in (student_logits, teacher_logits))
    size = max(student.shape[-1], teacher.shape[-1])
    student, teacher = (F.pad(probs, (0, size - probs.shape[-1])) for probs in (student, teacher))
    return (student.sort(-1, descending=True).values - teacher.sort(-1, descending=True).values).abs().sum(-1)


def test_uld_is_zero_for_identical_or_permuted_distributions():
    student = logits(5, 9, seed=1, scale=2)
    for k in (9, 4):
        assert uld_distance(student, *topk_from_logits(student, k)[1:]).abs().max() <= 1e-6
    permuted = student[:, torch.randperm(9, generator=torch.Generator().manual_seed(0))]
    assert uld_distance(student, *topk_from_logits(permuted, 9)[1:]).abs().max() <= 1e-6


@pytest.mark.parametrize(("student_size", "teacher_size"), [(7, 11), (11, 7), (8, 8)])
def test_uld_with_the_whole_teacher_equals_the_brute_force(student_size, teacher_size):
    student, teacher = logits(6, student_size, seed=1, scale=2), logits(6, teacher_size, seed=2, scale=2)
    _, teacher_logprobs, log_tail = topk_from_logits(teacher, teacher_size, temperature=1.5)
    values = uld_distance(student, teacher_logprobs, log_tail, temperature=1.5)
    torch.testing.assert_close(values.double(), full_sorted_l1(student, teacher, 1.5))
    assert ((values >= 0) & (values <= 2)).all()


def test_uld_against_a_top_k_is_a_lower_bound():
    student, teacher = logits(6, 10, seed=1, scale=2), logits(6, 12, seed=2, scale=2)
    full = full_sorted_l1(student, teacher)
    for k in range(1, 12):
        values = uld_distance(student, *topk_from_logits(teacher, k)[1:])
        assert (values.double() <= full + 1e-6).all() and (values >= 0).all()


def test_uld_loss_gradient_matches_finite_differences():
    teacher = logits(4, 7, seed=2, dtype=torch.float64)
    _, teacher_logprobs, log_tail = topk_from_logits(teacher, 3)
    labels = torch.tensor([1, IGNORE_INDEX, 4, 0])
    student = logits(4, 5, seed=1, dtype=torch.float64).requires_grad_()

    def loss(student_logits):
        return uld_loss(student_logits, teacher_logprobs, log_tail, labels, alpha=0.7, temperature=1.5, chunk_size=3)[0]

    assert torch.autograd.gradcheck(loss, (student,))


def test_uld_loss_parts_and_scale():
    student, teacher = logits(8, 10, seed=1, scale=2), logits(8, 13, seed=2, scale=2)
    labels = labels_for((8,), 10, torch.tensor([0, 1, 0, 0, 1, 0, 0, 0]).bool())
    valid = labels != IGNORE_INDEX
    _, teacher_logprobs, log_tail = topk_from_logits(teacher, 5, temperature=2.0)
    loss, parts = uld_loss(student, teacher_logprobs, log_tail, labels, alpha=0.3, temperature=2.0)
    torch.testing.assert_close(parts.kd, uld_distance(student, teacher_logprobs, log_tail, 2.0)[valid].mean())
    torch.testing.assert_close(parts.ce, F.cross_entropy(student[valid], labels[valid]))
    torch.testing.assert_close(loss, 0.7 * parts.ce + 0.3 * parts.kd)
    assert int(parts.tokens) == 6
    options = dict(alpha=0.3, temperature=2.0, scale_by_temperature_squared=True)
    _, scaled = uld_loss(student, teacher_logprobs, log_tail, labels, **options)
    torch.testing.assert_close(scaled.kd, 4 * parts.kd)


def test_uld_loss_chunked_and_accumulated_equal_one_batch():
    student, teacher = logits(8, 10, seed=1, scale=2), logits(8, 13, seed=2, scale=2)
    labels = labels_for((8,), 10, torch.tensor([1, 1, 0, 0, 0, 1, 0, 0]).bool())
    stored = topk_from_logits(teacher, 6)[1:]
    results = []
    for chunk_size in (None, 3):
        leaf = student.clone().requires_grad_()
        loss, parts = uld_loss(leaf, *stored, labels, alpha=0.4, chunk_size=chunk_size)
        loss.backward()
        results.append((loss, parts.ce, parts.kd, leaf.grad))
    for unchunked, chunked in zip(*results):
        torch.testing.assert_close(chunked, unchunked)
    summed = sum(
        uld_loss(student[half], *(part[half] for part in stored), labels[half], alpha=0.4, normaliser=5)[0]
        for half in (slice(0, 3), slice(3, 8))
    )
    torch.testing.assert_close(summed, results[0][0])


def test_uld_loss_all_masked_or_empty_is_zero():
    for size in (0, 4):
        student = logits(size, 6, seed=1).requires_grad_()
        teacher_logprobs, log_tail = logits(size, 3, seed=2).log_softmax(-1), torch.full((size,), -math.inf)
        labels = torch.full((size,), IGNORE_INDEX)
        loss, parts = uld_loss(student, teacher_logprobs, log_tail, labels, alpha=0.5, chunk_size=3)
        loss.backward()
        assert loss.item() == 0.0 and int(parts.tokens) == 0
        assert torch.equal(student.grad, torch.zeros_like(student))


def test_uld_loss_ignores_garbage_at_masked_positions():
    student, teacher = logits(5, 7, seed=1), logits(5, 9, seed=2)
    ignored = torch.tensor([0, 1, 0, 0, 1]).bool()
    labels = labels_for((5,), 7, ignored)
    teacher_logprobs, log_tail = topk_from_logits(teacher, 4)[1:]
    garbage = [tensor.clone() for tensor in (student, teacher_logprobs, log_tail)]
    garbage[0][ignored] = torch.tensor([math.nan, math.inf, -math.inf, 1e30, 0, 0, 0])
    garbage[1][ignored], garbage[2][ignored] = math.nan, math.nan
    results = []
    for inputs in ((student, teacher_logprobs, log_tail), garbage):
        leaf = inputs[0].clone().requires_grad_()
        loss, _ = uld_loss(leaf, *inputs[1:], labels, alpha=0.5)
        loss.backward()
        results.append((loss, leaf.grad))
    torch.testing.assert_close(results[1], results[0])


# --- MinED ---------------------------------------------------------------------------------------


def test_merge_duplicate_ids_by_hand():
    ids = torch.tensor([[3, 1, 3, 3, 2], [0, 1, 2, 3, 4]])
    logprobs = logprobs_of([[0.1, 0.2, 0.3, 0.15, 0.05], [0.5, 0.2, 0.1, 0.1, 0.1]])
    merged_ids, merged = merge_duplicate_ids(ids, logprobs)
    assert torch.equal(merged_ids, ids)
    torch.testing.assert_close(merged[0].exp(), torch.tensor([0.55, 0.2, 0, 0, 0.05], dtype=torch.float64))
    assert torch.isneginf(merged[0, 2:4]).all()
    torch.testing.assert_close(merged[1], logprobs[1])
    _, empty = merge_duplicate_ids(torch.tensor([[1, 1, 2]]), torch.tensor([[-math.inf, -math.inf, 0.0]]))
    assert torch.isneginf(empty[0, :2]).all() and empty[0, 2] == 0


@pytest.mark.parametrize("name", NAMES)
def test_mined_with_an_identity_map_is_topk_kd(name):
    student, teacher = logits(6, 10, seed=1, scale=2), logits(6, 10, seed=2, scale=2)
    labels = labels_for((6,), 10, torch.tensor([0, 1, 0, 0, 0, 0]).bool())
    stored = topk_from_logits(teacher, 4, temperature=2.0)
    options = dict(alpha=0.4, temperature=2.0, divergence=name)
    mined, mined_parts = mined_kd_loss(student, *stored, labels, **options)
    topk, topk_parts = topk_kd_loss(student, *stored, labels, **options)
    torch.testing.assert_close(mined, topk)
    torch.testing.assert_close(mined_parts.kd, topk_parts.kd)


@pytest.mark.parametrize("name", NAMES)
def test_mined_merges_teacher_tokens_mapped_to_one_student_token(name):
    student_logits = logits(1, 6, seed=1, dtype=torch.float64)
    teacher_ids = torch.tensor([[2, 4, 2, 1]])  # two teacher tokens became student token 2
    teacher_logprobs, log_tail = logprobs_of([[0.4, 0.2, 0.15, 0.1]]), logprobs_of([0.15])
    options = dict(alpha=1.0, temperature=1.0, divergence=name)
    _, parts = mined_kd_loss(student_logits, teacher_ids, teacher_logprobs, log_tail, torch.tensor([3]), **options)
    q = student_logits.softmax(-1)[0]
    student_buckets = torch.stack([q[2], q[4], q[1], 1 - q[2] - q[4] - q[1]]).log()
    teacher_buckets = logprobs_of([0.55, 0.2, 0.1, 0.15])
    torch.testing.assert_close(parts.kd, divergence_from_logprobs(name, student_buckets, teacher_buckets))


@pytest.mark.parametrize("name", NAMES)
def test_mined_is_zero_when_the_mapped_teacher_is_the_student(name):
    teacher = logits(3, 8, seed=2, scale=2, dtype=torch.float64)
    to_student = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4])  # teacher token → student token
    student_probs = torch.zeros(3, 5, dtype=torch.float64).index_add(-1, to_student, teacher.softmax(-1))
    ids, teacher_logprobs, log_tail = topk_from_logits(teacher, 8)
    options = dict(alpha=1.0, temperature=1.0, divergence=name)
    labels = torch.tensor([0, 2, 4])
    _, parts = mined_kd_loss(student_probs.log(), to_student[ids], teacher_logprobs, log_tail, labels, **options)
    assert abs(parts.kd.item()) <= 1e-9


def test_mined_gradient_with_duplicates_matches_finite_differences():
    teacher_ids = torch.tensor([[2, 4, 2, 1], [0, 0, 3, 3]])
    teacher_logprobs, log_tail = logprobs_of([[0.4, 0.2, 0.15, 0.1], [0.3, 0.3, 0.2, 0.1]]), logprobs_of([0.15, 0.1])
    labels = torch.tensor([3, 1])
    student = logits(2, 6, seed=1, dtype=torch.float64).requires_grad_()

    options = dict(alpha=0.6, temperature=1.2, divergence="jsd", beta=0.3)

    def loss(student_logits):
        return mined_kd_loss(student_logits, teacher_ids, teacher_logprobs, log_tail, labels, **options)[0]

    assert torch.autograd.gradcheck(loss, (student,))


# --- MinED pairs in the prepared examples ---------------------------------------------------


def test_mined_keeps_a_pair_only_where_the_teacher_token_maps_to_the_student_token():
    """The first piece of a split word pairs with the whole word only when the map sends the
    teacher's word to that piece; otherwise the position learns from its label alone."""
    from domainkd.distill.prepare import _add_alignment

    student = word_level_tokenizer(["<unk>", "un", "believ", "able", "unbelievably", "story", "re", "read"], metaspace=True)
    teacher = word_level_tokenizer(["<unk>", "unbelievable", "story", "reread"], metaspace=True)
    # "unbelievable story" and "reread story", as the student splits them and the teacher keeps them
    examples = [
        {"labels": [-100, 1, 2, 3, 5], "teacher_labels": [-100, 1, 2]},  # un believ able story | unbelievable story
        {"labels": [-100, 6, 7, 5], "teacher_labels": [-100, 3, 2]},  # re read story | reread story
    ]
    vocab_map = VocabularyMap(student, teacher)
    assert vocab_map(torch.tensor([1, 3])).tolist() == [4, 7]  # "unbelievable" → "unbelievably", "reread" → "read"
    _add_alignment("mined", student, teacher, examples, vocab_map)
    # "un" starts where "unbelievable" does, but the teacher's word maps to "unbelievably": no pair there
    assert list(zip(examples[0]["aligned_student"], examples[0]["aligned_teacher"])) == [(3, 1)]
    assert list(zip(examples[1]["aligned_student"], examples[1]["aligned_teacher"])) == [(2, 1)]
