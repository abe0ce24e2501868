import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from domainkd.distill import (
    DIVERGENCES,
    IGNORE_INDEX,
    divergence,
    divergence_from_logprobs,
    forward_kl,
    jensen_shannon,
    kd_loss,
    masked_mean,
    reverse_kl,
    sample_tail,
    skew_forward_kl,
    skew_reverse_kl,
    topk_divergence,
    topk_kd_loss,
    topk_from_logits,
)
from tests.distill.tensors import labels_for, logits, logprobs_of

NAMES = sorted(DIVERGENCES)


# --- every divergence ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_zero_on_identical_and_non_negative(name):
    student, teacher = logits(4, 7, 11, seed=1, scale=3), logits(4, 7, 11, seed=2, scale=3)
    assert divergence(name, student, student.clone()).abs().max() <= 1e-6
    values = divergence(name, student, teacher, temperature=2.0)
    assert values.shape == (4, 7)
    assert (values >= 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_shared_minus_inf_entries_are_as_if_removed(name):
    student, teacher = logits(5, 8, seed=1), logits(5, 8, seed=2)
    kept = torch.tensor([0, 2, 3, 5, 6, 7])
    masked_student = student.clone().index_fill(-1, torch.tensor([1, 4]), -math.inf).requires_grad_()
    masked_teacher = teacher.clone().index_fill(-1, torch.tensor([1, 4]), -math.inf)
    values = divergence(name, masked_student, masked_teacher)
    torch.testing.assert_close(values, divergence(name, student[:, kept], teacher[:, kept]))
    values.sum().backward()
    assert torch.isfinite(masked_student.grad).all()


@pytest.mark.parametrize("name", [name for name in NAMES if name != "adaptive_kl"])
def test_gradient_matches_finite_differences(name):
    teacher = logits(3, 6, seed=2, dtype=torch.float64)
    student = logits(3, 6, seed=1, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: divergence(name, s, teacher, temperature=1.5), (student,))


def test_adaptive_kl_gradient_holds_the_weights_constant():
    teacher = logits(3, 6, seed=2, dtype=torch.float64)
    student = logits(3, 6, seed=1, dtype=torch.float64).requires_grad_()
    names = ("adaptive_kl", "forward_kl", "reverse_kl")
    adaptive, forward, reverse = (divergence(name, student, teacher) for name in names)
    head_weight = ((adaptive - reverse) / (forward - reverse)).detach()  # the weights sum to 1
    assert ((head_weight > 0) & (head_weight < 1)).all()
    expected = torch.autograd.grad((head_weight * forward + (1 - head_weight) * reverse).sum(), student)[0]
    torch.testing.assert_close(torch.autograd.grad(adaptive.sum(), student)[0], expected)


@pytest.mark.parametrize("name", NAMES)
def test_chunked_equals_unchunked(name):
    student, teacher = logits(2, 5, 9, seed=1, scale=2), logits(2, 5, 9, seed=2, scale=2)
    labels = labels_for((2, 5), 9, torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 1]]).bool())
    results = []
    for chunk_size in (None, 3):
        leaf = student.clone().requires_grad_()
        loss, parts = kd_loss(leaf, teacher, labels, temperature=2.0, divergence=name, chunk_size=chunk_size)
        loss.backward()
        results.append((loss, parts.ce, parts.kd, leaf.grad))
    for unchunked, chunked in zip(*results):
        torch.testing.assert_close(chunked, unchunked)


@pytest.mark.parametrize("name", NAMES)
def test_all_masked_batch_is_zero_with_zero_gradient(name):
    student = logits(2, 4, 6, seed=1).requires_grad_()
    labels = torch.full((2, 4), IGNORE_INDEX)
    loss, parts = kd_loss(student, logits(2, 4, 6, seed=2), labels, divergence=name, chunk_size=3)
    loss.backward()
    assert loss.item() == 0.0 and parts.tokens.item() == 0
    assert torch.equal(student.grad, torch.zeros_like(student))


@pytest.mark.parametrize("name", NAMES)
def test_garbage_at_masked_positions_changes_nothing(name):
    student, teacher = logits(2, 5, 7, seed=1), logits(2, 5, 7, seed=2)
    ignored = torch.tensor([[0, 1, 0, 0, 1], [1, 0, 0, 0, 0]]).bool()
    labels = labels_for((2, 5), 7, ignored)
    garbage_student, garbage_teacher = student.clone(), teacher.clone()
    garbage_student[ignored] = torch.tensor([math.nan, math.inf, -math.inf, 1e30, 0, 0, 0])
    garbage_teacher[ignored] = math.nan
    results = []
    for s, t in ((student, teacher), (garbage_student, garbage_teacher)):
        leaf = s.clone().requires_grad_()
        loss, _ = kd_loss(leaf, t, labels, divergence=name)
        loss.backward()
        results.append((loss, leaf.grad))
    torch.testing.assert_close(results[1], results[0])
    assert (results[1][1][ignored] == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_topk_with_the_whole_vocabulary_equals_the_full_divergence(name):
    student, teacher = logits(3, 4, 10, seed=1, scale=2).requires_grad_(), logits(3, 4, 10, seed=2, scale=2)
    ids, top_logprobs, log_tail = topk_from_logits(teacher, k=10, temperature=2.0)
    assert torch.isneginf(log_tail).all()
    bucketed = topk_divergence(student, ids, top_logprobs, log_tail, name, temperature=2.0)
    full = divergence(name, student, teacher, temperature=2.0)
    torch.testing.assert_close(bucketed, full)
    bucketed_grad, full_grad = (torch.autograd.grad(value.sum(), student)[0] for value in (bucketed, full))
    torch.testing.assert_close(bucketed_grad, full_grad)  # finite, though the tail buckets are empty


# --- each divergence against an independent formula -----------------------------------


def test_kl_directions_match_torch_kl_div():
    student, teacher = logits(4, 9, seed=1, scale=2), logits(4, 9, seed=2, scale=2)
    log_q, log_p = F.log_softmax(student, -1), F.log_softmax(teacher, -1)
    kl_div = partial(F.kl_div, log_target=True, reduction="none")
    torch.testing.assert_close(forward_kl(student, teacher), kl_div(log_q, log_p).sum(-1))
    torch.testing.assert_close(reverse_kl(student, teacher), kl_div(log_p, log_q).sum(-1))


def plain_kl(a, b):
    return (a * (a / b).log()).sum(-1)


def test_jsd_matches_the_textbook_formula():
    student, teacher = logits(4, 9, seed=1, dtype=torch.float64), logits(4, 9, seed=2, dtype=torch.float64)
    q, p = student.softmax(-1), teacher.softmax(-1)
    middle = (p + q) / 2
    torch.testing.assert_close(jensen_shannon(student, teacher), 0.5 * plain_kl(p, middle) + 0.5 * plain_kl(q, middle))
    mixture = 0.3 * p + 0.7 * q  # beta weighs the teacher, as in TRL
    expected = 0.3 * plain_kl(p, mixture) + 0.7 * plain_kl(q, mixture)
    torch.testing.assert_close(jensen_shannon(student, teacher, beta=0.3), expected)


def test_jsd_ends_behave_like_trl_beta():
    student, teacher = logits(4, 9, seed=1, dtype=torch.float64), logits(4, 9, seed=2, dtype=torch.float64)
    small = 1e-5  # JSD_β ≈ β·KL(p ‖ q) near β = 0 and (1 − β)·KL(q ‖ p) near β = 1
    near_zero, near_one = (jensen_shannon(student, teacher, beta=beta) / small for beta in (small, 1 - small))
    torch.testing.assert_close(near_zero, forward_kl(student, teacher), rtol=1e-3, atol=0)
    torch.testing.assert_close(near_one, reverse_kl(student, teacher), rtol=1e-3, atol=0)


def test_skew_kl():
    student, teacher = logits(4, 9, seed=1, dtype=torch.float64), logits(4, 9, seed=2, dtype=torch.float64)
    torch.testing.assert_close(skew_forward_kl(student, teacher, skew=0.0), forward_kl(student, teacher))
    torch.testing.assert_close(skew_reverse_kl(student, teacher, skew=0.0), reverse_kl(student, teacher))
    q, p = student.softmax(-1), teacher.softmax(-1)
    torch.testing.assert_close(skew_forward_kl(student, teacher), plain_kl(p, 0.1 * p + 0.9 * q))
    torch.testing.assert_close(skew_reverse_kl(student, teacher), plain_kl(q, 0.1 * q + 0.9 * p))


def test_total_variation_by_hand():
    value = divergence_from_logprobs("tvd", logprobs_of([0.2, 0.3, 0.5]), logprobs_of([0.5, 0.3, 0.2]))
    assert value.item() == pytest.approx(0.3)


def test_adaptive_kl_is_forward_kl_when_the_tail_matches():
    student, teacher = logprobs_of([0.2, 0.3, 0.2, 0.2, 0.1]), logprobs_of([0.3, 0.2, 0.2, 0.2, 0.1])
    adaptive = divergence_from_logprobs("adaptive_kl", student, teacher, mu=0.55)  # head: the first two (0.5)
    torch.testing.assert_close(adaptive, divergence_from_logprobs("forward_kl", student, teacher))


def test_adaptive_kl_head_ends_before_the_token_that_crosses_mu():
    """Wu et al.'s code: the token whose running mass passes mu is in the tail (not the head, as the
    smallest set holding mu would have it), and the most likely token is always in the head."""
    q, p = [0.3, 0.4, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]  # head {0}: gap 0.1; tail {1, 2, 3}: gap 0.1
    forward = sum(a * math.log(a / b) for a, b in zip(p, q))
    reverse = sum(b * math.log(b / a) for a, b in zip(p, q))
    value = divergence_from_logprobs("adaptive_kl", logprobs_of(q), logprobs_of(p))
    assert value.item() == pytest.approx(0.5 * forward + 0.5 * reverse)
    # a most likely token above mu is the head alone: gap 0.2 there, 0.1 + 0.1 in the tail
    q, p = [0.5, 0.3, 0.2], [0.7, 0.2, 0.1]
    forward = sum(a * math.log(a / b) for a, b in zip(p, q))
    reverse = sum(b * math.log(b / a) for a, b in zip(p, q))
    value = divergence_from_logprobs("adaptive_kl", logprobs_of(q), logprobs_of(p), mu=0.3)
    assert value.item() == pytest.approx(0.5 * forward + 0.5 * reverse)


def test_adaptive_kl_by_hand():
    q, p = [0.3, 0.4, 0.3], [0.6, 0.3, 0.1]  # head {0}: gap 0.3; tail {1, 2}: gap 0.1 + 0.2
    forward = sum(a * math.log(a / b) for a, b in zip(p, q))
    reverse = sum(b * math.log(b / a) for a, b in zip(p, q))
    value = divergence_from_logprobs("adaptive_kl", logprobs_of(q), logprobs_of(p))
    assert value.item() == pytest.approx(0.5 * forward + 0.5 * reverse)


# --- reduction and the KD objective ---------------------------------------------------


def test_masked_mean():
    values = torch.tensor([1.0, 2.0, 3.0, math.nan])
    mask = torch.tensor([1, 1, 0, 0])
    assert masked_mean(values, mask).item() == 1.5
    assert masked_mean(values, mask, normaliser=6).item() == 0.5
    empty = torch.ones(3, requires_grad=True)
    result = masked_mean(empty, torch.zeros(3, dtype=torch.bool))
    result.backward()
    assert result.item() == 0.0 and torch.equal(empty.grad, torch.zeros(3))


def test_gradient_accumulation_equals_one_batch():
    student, teacher = logits(4, 6, 11, seed=1), logits(4, 6, 11, seed=2)
    ignored = torch.rand(4, 6, generator=torch.Generator().manual_seed(3)) < 0.4
    ignored[:2] = True  # the halves hold very different token counts
    ignored[0, 0] = False
    labels = labels_for((4, 6), 11, ignored)
    options = dict(alpha=0.3, temperature=2.0, divergence="jsd", beta=0.4)

    full = student.clone().requires_grad_()
    full_loss, _ = kd_loss(full, teacher, labels, **options)
    full_loss.backward()

    accumulated = student.clone().requires_grad_()
    total_tokens = (labels != IGNORE_INDEX).sum()
    summed = 0
    for half in (slice(0, 2), slice(2, 4)):
        loss, _ = kd_loss(accumulated[half], teacher[half], labels[half], normaliser=total_tokens, **options)
        loss.backward()
        summed += loss.item()
    assert summed == pytest.approx(full_loss.item())
    torch.testing.assert_close(accumulated.grad, full.grad)


def test_kd_term_has_the_scale_of_the_cross_entropy():
    student, teacher = logits(4, 16, 1000, seed=1, scale=2), logits(4, 16, 1000, seed=2, scale=2)
    ignored = torch.zeros(4, 16, dtype=torch.bool)
    ignored[:, :5] = True  # a prompt
    labels = labels_for((4, 16), 1000, ignored)
    loss, parts = kd_loss(student, teacher, labels, alpha=0.5, divergence="forward_kl")
    assert 0.2 < parts.kd.item() / parts.ce.item() < 5
    torch.testing.assert_close(parts.kd, forward_kl(student, teacher)[~ignored].mean())
    torch.testing.assert_close(parts.ce, F.cross_entropy(student[~ignored], labels[~ignored]))
    torch.testing.assert_close(loss, 0.5 * parts.ce + 0.5 * parts.kd)
    assert parts.tokens.item() == 44


def test_temperature_squared_scaling():
    student, teacher = logits(2, 3, 5, seed=1), logits(2, 3, 5, seed=2)
    labels = labels_for((2, 3), 5, torch.zeros(2, 3, dtype=torch.bool))
    _, plain = kd_loss(student, teacher, labels, temperature=3.0)
    _, scaled = kd_loss(student, teacher, labels, temperature=3.0, scale_by_temperature_squared=True)
    torch.testing.assert_close(scaled.kd, 9 * plain.kd)


def test_kd_loss_gradient_matches_finite_differences():
    teacher = logits(2, 3, 5, seed=2, dtype=torch.float64)
    labels = labels_for((2, 3), 5, torch.tensor([[1, 0, 0], [0, 0, 1]]).bool())
    student = logits(2, 3, 5, seed=1, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: kd_loss(s, teacher, labels, temperature=2.0, chunk_size=2)[0], (student,))


# --- top-k teacher ------------------------------------------------------------------------


def test_topk_tail_mass_matches_float64():
    teacher = logits(3, 50, seed=2, scale=3)
    ids, top_logprobs, log_tail = topk_from_logits(teacher, k=8, temperature=1.5)
    probs = (teacher.double() / 1.5).softmax(-1)
    torch.testing.assert_close(top_logprobs.double(), probs.topk(8).values.log())
    torch.testing.assert_close(log_tail.double(), (1 - probs.gather(-1, ids).sum(-1)).log(), rtol=1e-5, atol=1e-6)


def test_topk_is_close_for_a_peaked_teacher():
    student, teacher = logits(6, 50, seed=1), logits(6, 50, seed=2, scale=5)
    full = forward_kl(student, teacher)
    bucketed = topk_divergence(student, *topk_from_logits(teacher, k=8), "forward_kl")
    assert ((bucketed - full).abs() <= 0.1 * full).all()


def test_tail_samples_make_the_topk_forward_kl_unbiased():
    student, teacher = logits(4, 300, seed=1, scale=2), logits(4, 300, seed=2, scale=2)
    ids, top_logprobs, log_tail = topk_from_logits(teacher, k=16)
    full, bucketed = forward_kl(student, teacher), topk_divergence(student, ids, top_logprobs, log_tail)
    assert (bucketed < 0.97 * full).all()  # the buckets alone are a lower bound, well below here
    generator = torch.Generator().manual_seed(0)
    tail = sample_tail(teacher, ids, log_tail, samples=20_000, generator=generator)
    assert tail[0].shape == (4, 20_000) and not (tail[0][:, :, None] == ids[:, None, :]).any()
    corrected = topk_divergence(student, ids, top_logprobs, log_tail, "forward_kl", 1.0, *tail)
    torch.testing.assert_close(corrected, full, rtol=0.01, atol=0)


def test_tail_entropy_is_exact_and_an_empty_tail_adds_nothing():
    teacher = logits(3, 40, seed=2, scale=2)
    ids, _, log_tail = topk_from_logits(teacher, k=10)
    _, entropy = sample_tail(teacher, ids, log_tail, samples=2)
    tail_probs = teacher.double().softmax(-1).scatter(-1, ids, 0.0)
    tail_probs = tail_probs / tail_probs.sum(-1, keepdim=True)
    expected = -(tail_probs * tail_probs.clamp_min(1e-300).log()).sum(-1)
    torch.testing.assert_close(entropy.double(), expected, rtol=1e-4, atol=1e-6)
    student = logits(3, 40, seed=1)
    all_ids, all_logprobs, no_tail = topk_from_logits(teacher, k=40)
    tail = sample_tail(teacher, all_ids, no_tail, samples=3)
    assert (tail[1] == 0).all()
    torch.testing.assert_close(
        topk_divergence(student, all_ids, all_logprobs, no_tail, "forward_kl", 1.0, *tail), forward_kl(student, teacher)
    )


def test_tail_corrected_gradient_is_unbiased():
    teacher = logits(2, 60, seed=2, scale=2, dtype=torch.float64)
    ids, top_logprobs, log_tail = topk_from_logits(teacher, k=6)
    student = logits(2, 60, seed=1, dtype=torch.float64).requires_grad_()
    (full_gradient,) = torch.autograd.grad(forward_kl(student, teacher).sum(), student)
    tail = sample_tail(teacher, ids, log_tail, samples=50_000, generator=torch.Generator().manual_seed(3))
    corrected = topk_divergence(student, ids, top_logprobs, log_tail, "forward_kl", 1.0, *tail).sum()
    (gradient,) = torch.autograd.grad(corrected, student)
    torch.testing.assert_close(gradient, full_gradient, atol=2e-3, rtol=0)


def test_tail_samples_are_refused_for_other_divergences():
    teacher, student = logits(2, 30, seed=2), logits(2, 30, seed=1)
    ids, top_logprobs, log_tail = topk_from_logits(teacher, k=5)
    tail = sample_tail(teacher, ids, log_tail, samples=2)
    with pytest.raises(ValueError, match="forward KL only, not jsd"):
        topk_divergence(student, ids, top_logprobs, log_tail, "jsd", 1.0, *tail)


def test_topk_kd_loss_with_tail_is_the_same_in_chunks():
    student, teacher = logits(7, 50, seed=1), logits(7, 50, seed=2, scale=2)
    labels = labels_for((7,), 50, torch.tensor([False, True, False, False, False, True, False]), seed=3)
    ids, top_logprobs, log_tail = topk_from_logits(teacher, k=4)
    tail = sample_tail(teacher, ids, log_tail, samples=3, generator=torch.Generator().manual_seed(0))
    whole, _ = topk_kd_loss(student, ids, top_logprobs, log_tail, labels, teacher_tail=tail)
    chunked, _ = topk_kd_loss(student, ids, top_logprobs, log_tail, labels, teacher_tail=tail, chunk_size=3)
    plain, _ = topk_kd_loss(student, ids, top_logprobs, log_tail, labels)
    torch.testing.assert_close(whole, chunked)
    assert not torch.allclose(whole, plain)


def test_topk_gradient_matches_finite_differences():
    teacher = logits(2, 6, seed=2, dtype=torch.float64)
    stored = topk_from_logits(teacher, k=3)
    student = logits(2, 6, seed=1, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: topk_divergence(s, *stored, "jsd", beta=0.3), (student,))


# --- validation -------------------------------------------------------------------------


def test_unknown_divergence_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        divergence("kl", logits(2, 3), logits(2, 3))
    assert all(name in str(error.value) for name in DIVERGENCES)
    with pytest.raises(ValueError):
        kd_loss(logits(2, 3), logits(2, 3), torch.zeros(2, dtype=torch.long), divergence="kl")


@pytest.mark.parametrize(
    ("name", "params"),
    [("jsd", {"beta": 0.0}), ("jsd", {"beta": 1.0}), ("jsd", {"beta": 1.5}), ("skew_forward_kl", {"skew": 1.0}),
     ("skew_reverse_kl", {"skew": -0.1}), ("adaptive_kl", {"mu": 0.0}), ("forward_kl", {"temperature": 0.0})],
)  # fmt: skip
def test_bad_parameters_are_rejected(name, params):
    with pytest.raises(ValueError, match=next(iter(params))):
        divergence(name, logits(2, 3), logits(2, 3), **params)


def test_bad_k_and_alpha_are_rejected():
    with pytest.raises(ValueError, match="k must"):
        topk_from_logits(logits(2, 3), k=0)
    with pytest.raises(ValueError, match="k must"):
        topk_from_logits(logits(2, 3), k=4)
    with pytest.raises(ValueError, match="alpha"):
        kd_loss(logits(2, 3), logits(2, 3), torch.zeros(2, dtype=torch.long), alpha=1.5)


def test_topk_kd_loss_with_the_whole_vocabulary_equals_kd_loss():
    torch.manual_seed(3)
    student, teacher = torch.randn(10, 12, requires_grad=True), torch.randn(10, 12)
    labels = torch.randint(0, 12, (10,))
    labels[:3] = IGNORE_INDEX
    ids, logprobs, log_tail = topk_from_logits(teacher, k=12, temperature=2.0)
    full, full_parts = kd_loss(student, teacher, labels, alpha=0.3, temperature=2.0, scale_by_temperature_squared=True)
    stored, stored_parts = topk_kd_loss(
        student, ids, logprobs, log_tail, labels, alpha=0.3, temperature=2.0, scale_by_temperature_squared=True, chunk_size=4
    )
    torch.testing.assert_close(stored, full)
    torch.testing.assert_close(stored_parts.kd, full_parts.kd)
    assert int(stored_parts.tokens) == 7


def test_the_student_tail_mass_matches_a_masked_logsumexp_in_value_and_gradient():
    from domainkd.distill.losses import _log_mass_outside, _logsumexp

    student = logits(6, 40, seed=4, dtype=torch.float64)
    student[1, 3] = 900.0  # near-certain: the other entries' probabilities underflow, the exact path takes over
    student[2, :] = 0.0  # flat
    student[3, 5:] = -math.inf  # masked vocabulary
    student = student.float().requires_grad_()
    ids = torch.stack([torch.randperm(40, generator=torch.Generator().manual_seed(row))[:8] for row in range(6)])
    ids[1, 0], ids[3, :5] = 3, torch.arange(5)  # row 3: the ids cover every entry left: no tail at all
    logprobs = F.log_softmax(student, dim=-1)
    fast = _log_mass_outside(logprobs, ids)
    exact = _logsumexp(logprobs.scatter(-1, ids, -math.inf))
    assert fast[3] == -math.inf and torch.isfinite(fast[[0, 1, 2, 4, 5]]).all() and fast[1] < -800
    torch.testing.assert_close(fast, exact)
    weights = torch.tensor([1.0, 2.0, -1.0, 0.0, 0.5, 3.0])  # row 3 is -inf: weight 0 keeps the sum finite
    (fast_grad,) = torch.autograd.grad((fast * weights).nan_to_num(neginf=0.0).sum(), student, retain_graph=True)
    (exact_grad,) = torch.autograd.grad((exact * weights).nan_to_num(neginf=0.0).sum(), student)
    torch.testing.assert_close(fast_grad, exact_grad)
    assert not fast_grad.isnan().any()


@pytest.mark.parametrize(("name", "with_tail"), [(name, False) for name in NAMES] + [("forward_kl", True)])  # draws: forward KL
def test_topk_loss_garbage_at_ignored_rows_changes_nothing(name, with_tail):
    """Stored rows at ignored positions may hold anything (padding ids, NaN): loss and gradient as if clean."""
    student, teacher = logits(6, 9, seed=1), logits(6, 9, seed=2)
    ignored = torch.tensor([0, 1, 0, 0, 1, 0]).bool()
    labels = labels_for((6,), 9, ignored)
    ids, top, log_tail = topk_from_logits(teacher, k=3)
    tail = sample_tail(teacher, ids, log_tail, 4, generator=torch.Generator().manual_seed(0)) if with_tail else None
    results = []
    for garbage in (False, True):
        s, i, t, lt = student.clone(), ids.clone(), top.clone(), log_tail.clone()
        draws = tuple(part.clone() for part in tail) if tail else None
        if garbage:
            s[ignored], i[ignored], t[ignored], lt[ignored] = math.nan, -1, math.nan, math.inf
            if draws:
                draws[0][ignored], draws[1][ignored] = -1, math.nan
        leaf = s.requires_grad_()
        loss, _ = topk_kd_loss(leaf, i, t, lt, labels, divergence=name, teacher_tail=draws)
        loss.backward()
        results.append((loss.detach(), leaf.grad))
    torch.testing.assert_close(results[1], results[0])
    assert torch.isfinite(results[1][1]).all() and (results[1][1][ignored] == 0).all()
