import math
from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn.functional as F

from domainkd.distill.dskd import DSKDProjectors, cma_dskd_loss, dskd_loss
from domainkd.distill.losses import IGNORE_INDEX, jensen_shannon

STUDENT_SIZE, TEACHER_SIZE = 8, 12
STUDENT_VOCAB, TEACHER_VOCAB = 20, 30
TERMS = ("t2s_ce", "t2s_kd", "s2t_kd")


def randn(*shape, seed, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def projectors(cross_attention=False, seed=0):
    torch.manual_seed(seed)
    return DSKDProjectors(STUDENT_SIZE, TEACHER_SIZE, cross_attention).double()


def forward_kl(student_logits, teacher_logits):
    """KL(teacher ‖ student) per row, independently of losses.py."""
    return F.kl_div(
        student_logits.log_softmax(-1), teacher_logits.log_softmax(-1), log_target=True, reduction="none"
    ).sum(-1)


# --- same vocabulary ------------------------------------------------------------------


@dataclass
class Same:
    """Inputs of dskd_loss, positional order."""

    student_logits: torch.Tensor
    student_hidden: torch.Tensor
    teacher_logits: torch.Tensor | None
    teacher_hidden: torch.Tensor
    labels: torch.Tensor
    student_head: torch.Tensor
    teacher_head: torch.Tensor

    def loss(self, projectors, **options):
        return dskd_loss(*vars(self).values(), projectors, **options)

    def leaves(self):
        return replace(self, student_logits=self.student_logits.clone().requires_grad_(),
                       student_hidden=self.student_hidden.clone().requires_grad_())


def same_case(rows=6, seed=0, ignored=()):
    teacher_hidden = randn(rows, TEACHER_SIZE, seed=seed + 3)
    teacher_head = randn(STUDENT_VOCAB, TEACHER_SIZE, seed=seed + 5)  # the shared vocabulary
    labels = torch.randint(STUDENT_VOCAB, (rows,), generator=torch.Generator().manual_seed(seed))
    labels[list(ignored)] = IGNORE_INDEX
    return Same(
        student_logits=randn(rows, STUDENT_VOCAB, seed=seed + 1, scale=2),
        student_hidden=randn(rows, STUDENT_SIZE, seed=seed + 2),
        teacher_logits=teacher_hidden @ teacher_head.T,
        teacher_hidden=teacher_hidden,
        labels=labels,
        student_head=randn(STUDENT_VOCAB, STUDENT_SIZE, seed=seed + 4),
        teacher_head=teacher_head,
    )


def repo_dskd(case, projectors):
    """The repo's DualSpaceKD.compute_dual_space_kd_loss (forward KL, no padding), over the token count."""
    t2s_logits = projectors.t2s(case.teacher_hidden) @ case.student_head.detach().T
    t2s_ce = F.cross_entropy(t2s_logits, case.labels, reduction="sum")
    t2s_kd = forward_kl(case.student_logits, t2s_logits.detach()).sum()
    s2t_logits = projectors.s2t(case.student_hidden) @ case.teacher_head.detach().T
    s2t_kd = forward_kl(s2t_logits, case.teacher_logits).sum()
    return (t2s_ce + t2s_kd + s2t_kd) / len(case.labels)


def grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True)


def test_shapes_finite_and_the_parts_sum_to_the_loss():
    loss, parts = same_case().loss(projectors(), temperature=2.0)
    assert loss.shape == () and torch.isfinite(loss)
    assert set(parts) == {*TERMS, "t2s_accuracy", "tokens"}
    assert all(parts[name] >= 0 for name in TERMS) and parts["tokens"].item() == 6
    torch.testing.assert_close(loss.detach(), sum(parts[name] for name in TERMS))


def test_matches_the_repo_in_value_and_gradients():
    case, proj = same_case().leaves(), projectors()
    ours, _ = case.loss(proj)
    reference = repo_dskd(case, proj)
    torch.testing.assert_close(ours, reference)
    leaves = (case.student_logits, case.student_hidden, *proj.parameters())
    for got, expected in zip(grads(ours, *leaves), grads(reference, *leaves)):
        torch.testing.assert_close(got, expected)


def test_gradients_reach_the_student_and_projectors_but_never_the_teacher_or_heads():
    case, proj = same_case().leaves(), projectors()
    frozen = ("teacher_logits", "teacher_hidden", "student_head", "teacher_head")
    case = replace(case, **{name: getattr(case, name).clone().requires_grad_() for name in frozen})
    teacher = [getattr(case, name) for name in frozen]
    loss, _ = case.loss(proj)
    student_grads = grads(loss, case.student_logits, case.student_hidden, *proj.parameters())
    assert all(grad is not None and grad.abs().sum() > 0 for grad in student_grads)
    assert all(grad is None for grad in grads(loss, *teacher))


def test_teacher_logits_none_uses_the_teacher_head():
    case, proj = same_case(), projectors()
    with_logits, _ = case.loss(proj)
    from_hidden, _ = replace(case, teacher_logits=None).loss(proj, chunk_size=4)
    torch.testing.assert_close(from_hidden, with_logits)


def test_chunked_equals_unchunked():
    case, proj = same_case(rows=7, ignored=[2]).leaves(), projectors()
    results = []
    for chunk_size in (None, 3):
        loss, parts = case.loss(proj, divergence="jsd", beta=0.3, temperature=1.5, chunk_size=chunk_size)
        results.append((loss, *(parts[name] for name in TERMS), *grads(loss, case.student_hidden, *proj.parameters())))
    for unchunked, chunked in zip(*results):
        torch.testing.assert_close(chunked, unchunked)


def test_divergence_params_reach_the_student_space_only_by_default():
    case, proj = same_case(), projectors()
    _, parts = case.loss(proj, divergence="jsd", beta=0.3)
    t2s_logits = proj.t2s(case.teacher_hidden) @ case.student_head.T
    expected = jensen_shannon(case.student_logits, t2s_logits, beta=0.3).mean()
    torch.testing.assert_close(parts["t2s_kd"], expected.detach())
    _, forward = case.loss(proj)
    torch.testing.assert_close(parts["s2t_kd"], forward["s2t_kd"])  # forward KL, no beta
    _, both = case.loss(proj, divergence="jsd", teacher_space_divergence="jsd", beta=0.3)
    assert not torch.allclose(both["s2t_kd"], forward["s2t_kd"])


def test_normaliser_divides_the_sum_once():
    case, proj = same_case(ignored=[0, 4]), projectors()
    by_tokens, _ = case.loss(proj)
    by_ten, parts = case.loss(proj, normaliser=10)
    torch.testing.assert_close(by_ten * 10, by_tokens * 4)
    assert parts["tokens"].item() == 4


def test_micro_batches_with_the_total_normaliser_add_up_to_the_full_batch():
    case, proj = same_case(rows=8, ignored=[0, 1, 2, 6]).leaves(), projectors()
    full, _ = case.loss(proj)
    leaves = (case.student_hidden, *proj.parameters())
    per_position = ("student_logits", "student_hidden", "teacher_logits", "teacher_hidden", "labels")
    halves = [
        replace(case, **{name: getattr(case, name)[rows] for name in per_position})
        for rows in (slice(0, 3), slice(3, 8))
    ]
    summed = sum(half.loss(proj, normaliser=4)[0] for half in halves)
    torch.testing.assert_close(summed, full)
    for got, expected in zip(grads(summed, *leaves), grads(full, *leaves)):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("rows", [0, 5])
def test_all_masked_or_empty_is_zero_with_finite_gradients(rows):
    case = same_case(rows=rows, ignored=range(rows)).leaves()
    with torch.no_grad():
        case.student_logits[:] = math.nan  # garbage at masked positions goes nowhere
        case.teacher_hidden[:] = math.inf
    proj = projectors()
    loss, parts = case.loss(proj, chunk_size=2)
    assert loss.item() == 0.0 and parts["tokens"].item() == 0
    for grad in grads(loss, case.student_logits, case.student_hidden, *proj.parameters()):
        assert torch.equal(grad, torch.zeros_like(grad))


def finite_difference_check(loss_of, weight, entries, step=1e-6):
    """The projector gradient of the loss against central differences of ``t2s_ce + s2t_kd``.

    ``t2s_kd``'s target is detached (a stop-gradient, as in the repo), so the projectors
    learn from the other two terms only.
    """
    autograd = torch.autograd.grad(loss_of()[0], weight)[0]

    def differentiated():
        parts = loss_of()[1]
        return (parts["t2s_ce"] + parts["s2t_kd"]).item()

    for entry in entries:
        with torch.no_grad():
            weight[entry] += step
            up = differentiated()
            weight[entry] -= 2 * step
            down = differentiated()
            weight[entry] += step
        assert autograd[entry].item() == pytest.approx((up - down) / (2 * step), rel=1e-5, abs=1e-8)


def test_projector_gradients_match_finite_differences():
    case, proj = same_case(), projectors()
    for weight in (proj.t2s.weight, proj.s2t.weight):
        finite_difference_check(lambda: case.loss(proj, temperature=1.5), weight, [(0, 0), (3, 5), (7, 2)])


def t2s_ce_while_training(case, proj, steps=60):
    """``t2s_ce`` at each of ``steps`` Adam steps on the projectors alone."""
    optimiser = torch.optim.Adam(proj.parameters(), lr=0.05)
    history = []
    for _ in range(steps):
        loss, parts = case.loss(proj)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(parts["t2s_ce"].item())
    return history


def test_training_only_the_projectors_lowers_t2s_ce():
    case, proj = same_case(rows=16, seed=7), projectors()
    case.labels = case.teacher_logits.argmax(-1)  # a map the projector can learn
    history = t2s_ce_while_training(case, proj)
    assert history[-1] < 0.3 * history[0]


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="hidden sizes"):
        DSKDProjectors(0, 12, cross_attention=False)
    case, proj = same_case(), projectors()
    with pytest.raises(ValueError, match="unknown divergence 'kl'"):
        case.loss(proj, divergence="kl")
    with pytest.raises(ValueError, match="chunk_size"):
        case.loss(proj, chunk_size=0)
    with pytest.raises(ValueError, match="temperature"):
        case.loss(proj, temperature=0)


# --- cross-model attention --------------------------------------------------------------


@dataclass
class Cross:
    """Inputs of cma_dskd_loss, positional order."""

    student_logits: torch.Tensor
    student_hidden: torch.Tensor
    student_index_embeds: torch.Tensor
    labels: torch.Tensor
    student_counts: torch.Tensor
    teacher_logits: torch.Tensor | None
    teacher_hidden: torch.Tensor
    teacher_index_embeds: torch.Tensor
    teacher_labels: torch.Tensor
    teacher_counts: torch.Tensor
    student_head: torch.Tensor
    teacher_head: torch.Tensor

    def loss(self, projectors, **options):
        return cma_dskd_loss(*vars(self).values(), projectors, **options)

    def leaves(self):
        return replace(self, student_logits=self.student_logits.clone().requires_grad_(),
                       student_hidden=self.student_hidden.clone().requires_grad_())

    def examples(self, chosen):
        """The batch of only the ``chosen`` examples."""
        student_ids, teacher_ids = (
            torch.cat([torch.arange(int(c[:b].sum()), int(c[: b + 1].sum())) for b in chosen])
            for c in (self.student_counts, self.teacher_counts)
        )
        return Cross(
            *(self.student_logits[student_ids], self.student_hidden[student_ids]),
            *(self.student_index_embeds[student_ids], self.labels[student_ids], self.student_counts[chosen]),
            *(self.teacher_logits[teacher_ids], self.teacher_hidden[teacher_ids]),
            *(self.teacher_index_embeds[teacher_ids], self.teacher_labels[teacher_ids], self.teacher_counts[chosen]),
            self.student_head,
            self.teacher_head,
        )


def cross_case(student_counts=(3, 4), teacher_counts=(4, 2), seed=0):
    rows, teacher_rows = sum(student_counts), sum(teacher_counts)
    teacher_hidden = randn(teacher_rows, TEACHER_SIZE, seed=seed + 5)
    teacher_head = randn(TEACHER_VOCAB, TEACHER_SIZE, seed=seed + 6)
    generator = torch.Generator().manual_seed(seed)
    return Cross(
        student_logits=randn(rows, STUDENT_VOCAB, seed=seed + 1, scale=2),
        student_hidden=randn(rows, STUDENT_SIZE, seed=seed + 2),
        student_index_embeds=randn(rows, 2 * STUDENT_SIZE, seed=seed + 3),
        labels=torch.randint(STUDENT_VOCAB, (rows,), generator=generator),
        student_counts=torch.tensor(student_counts, dtype=torch.long),
        teacher_logits=teacher_hidden @ teacher_head.T,
        teacher_hidden=teacher_hidden,
        teacher_index_embeds=randn(teacher_rows, 2 * TEACHER_SIZE, seed=seed + 7, scale=0.5),
        teacher_labels=torch.randint(TEACHER_VOCAB, (teacher_rows,), generator=generator),
        teacher_counts=torch.tensor(teacher_counts, dtype=torch.long),
        student_head=randn(STUDENT_VOCAB, STUDENT_SIZE, seed=seed + 4),
        teacher_head=teacher_head,
    )


def repo_cma_t2s_logits(case, proj):
    """The repo's DualSpaceKDWithCMA t2s logits for one unpadded example (std over the whole tensors)."""
    index, hidden = case.teacher_index_embeds, case.teacher_hidden
    target = index[:, TEACHER_SIZE:]
    align = proj.query(case.student_index_embeds) @ (index / index.std()).T / math.sqrt(2 * TEACHER_SIZE)
    t2s_hidden = align.softmax(-1) @ proj.t2s(hidden / hidden.std() + target / target.std())
    return align, t2s_hidden @ case.student_head.T


def repo_cma(case, proj):
    """The repo's DualSpaceKDWithCMA.compute_dual_space_kd_loss_with_cma, B = 1, over the token count."""
    align, t2s_logits = repo_cma_t2s_logits(case, proj)
    t2s_ce = F.cross_entropy(t2s_logits, case.labels, reduction="sum")
    correct = t2s_logits.argmax(-1) == case.labels
    t2s_kd = (forward_kl(case.student_logits, t2s_logits.detach()) * correct).sum()
    s2t_logits = align.T.softmax(-1) @ proj.s2t(case.student_hidden) @ case.teacher_head.T
    s2t_kd = forward_kl(s2t_logits, case.teacher_logits).sum()
    return (t2s_ce + t2s_kd + s2t_kd) / len(case.labels)


def test_cma_matches_the_repo_for_one_example_in_value_and_gradients():
    case, proj = cross_case(student_counts=(6,), teacher_counts=(5,)).leaves(), projectors(cross_attention=True)
    case.labels[:3] = repo_cma_t2s_logits(case, proj)[1].argmax(-1)[:3]  # the accuracy mask keeps these
    ours, parts = case.loss(proj)
    assert parts["t2s_kd"] > 0 and parts["t2s_accuracy"].item() == pytest.approx(0.5)
    reference = repo_cma(case, proj)
    torch.testing.assert_close(ours, reference)
    leaves = (case.student_logits, case.student_hidden, *proj.parameters())
    for got, expected in zip(grads(ours, *leaves), grads(reference, *leaves)):
        torch.testing.assert_close(got, expected)


def test_cma_by_hand_with_uniform_attention():
    case, proj = cross_case(student_counts=(2,), teacher_counts=(3,)), projectors(cross_attention=True)
    with torch.no_grad():
        proj.query.weight.zero_()
        proj.query.bias.zero_()  # align = 0: every position attends uniformly to the other side
    index, hidden = case.teacher_index_embeds, case.teacher_hidden
    values = proj.t2s(hidden / hidden.std() + index[:, TEACHER_SIZE:] / index[:, TEACHER_SIZE:].std())
    t2s_logits = (values.mean(0) @ case.student_head.T).expand(2, -1)
    s2t_logits = (proj.s2t(case.student_hidden).mean(0) @ case.teacher_head.T).expand(3, -1)
    expected = {
        "t2s_ce": F.cross_entropy(t2s_logits, case.labels, reduction="sum") / 2,
        "t2s_kd": torch.zeros((), dtype=torch.float64),  # no t2s argmax hits its label here
        "s2t_kd": forward_kl(s2t_logits, case.teacher_logits).sum() / 2,
    }
    assert (t2s_logits.argmax(-1) != case.labels).all()
    _, parts = case.loss(proj)
    for name in TERMS:
        torch.testing.assert_close(parts[name], expected[name].detach())


def test_cma_shapes_finite_and_gradients_stay_on_the_student_side():
    case, proj = cross_case().leaves(), projectors(cross_attention=True)
    frozen = ("teacher_logits", "teacher_hidden", "teacher_index_embeds")
    frozen += ("student_index_embeds", "student_head", "teacher_head")
    case = replace(case, **{name: getattr(case, name).clone().requires_grad_() for name in frozen})
    teacher = [getattr(case, name) for name in frozen]
    loss, parts = case.loss(proj, temperature=2.0)
    assert torch.isfinite(loss) and all(parts[name] >= 0 for name in TERMS)
    torch.testing.assert_close(loss.detach(), sum(parts[name] for name in TERMS))
    student_grads = grads(loss, case.student_hidden, *proj.parameters())  # t2s_kd is masked out here
    assert all(grad is not None and grad.abs().sum() > 0 for grad in student_grads)
    assert all(grad is None for grad in grads(loss, *teacher))  # embeddings are detached too, as in the repo


def test_cma_teacher_logits_none_uses_the_teacher_head():
    case, proj = cross_case(), projectors(cross_attention=True)
    torch.testing.assert_close(replace(case, teacher_logits=None).loss(proj)[0], case.loss(proj)[0])


def test_cma_attention_never_crosses_examples():
    case, proj = cross_case(student_counts=(3, 4), teacher_counts=(4, 5)).leaves(), projectors(cross_attention=True)
    teacher_side = ("teacher_logits", "teacher_hidden", "teacher_index_embeds")
    changed = replace(case, **{name: getattr(case, name).clone() for name in teacher_side})
    for name in teacher_side:
        getattr(changed, name)[4:] = randn(5, getattr(changed, name).shape[1], seed=99, scale=5)  # example 2's
    first = slice(0, 3)  # example 1's student rows
    (loss, _), (changed_loss, _) = case.loss(proj), changed.loss(proj)
    assert not torch.allclose(loss, changed_loss)
    for before, after in zip(grads(loss, case.student_logits, case.student_hidden),
                             grads(changed_loss, case.student_logits, case.student_hidden)):
        torch.testing.assert_close(after[first], before[first])
    torch.testing.assert_close(case.examples([0]).loss(proj, normaliser=7)[0],
                               changed.examples([0]).loss(proj, normaliser=7)[0])


def test_cma_micro_batches_with_the_total_normaliser_add_up_to_the_full_batch():
    case, proj = cross_case(student_counts=(3, 1, 4), teacher_counts=(2, 3, 5)), projectors(cross_attention=True)
    options = dict(divergence="skew_forward_kl", skew=0.2)
    full, full_parts = case.loss(proj, **options)
    pieces = [case.examples(chosen).loss(proj, normaliser=8, **options) for chosen in ([0], [1, 2])]
    torch.testing.assert_close(pieces[0][0] + pieces[1][0], full)
    for name in (*TERMS, "t2s_accuracy"):
        torch.testing.assert_close(pieces[0][1][name] + pieces[1][1][name], full_parts[name])
    by_ten, _ = case.loss(proj, normaliser=10, **options)
    torch.testing.assert_close(by_ten * 10, full * 8)


def test_cma_ignored_positions_are_as_if_removed():
    case, proj = cross_case(student_counts=(3, 4), teacher_counts=(4, 3)).leaves(), projectors(cross_attention=True)
    masked = replace(case, labels=case.labels.clone(), teacher_labels=case.teacher_labels.clone(),
                     teacher_hidden=case.teacher_hidden.clone(), student_hidden=case.student_hidden.detach().clone())
    masked.labels[[1, 5]] = IGNORE_INDEX
    masked.teacher_labels[[0, 6]] = IGNORE_INDEX
    masked.student_hidden[[1, 5]] = math.nan
    masked.teacher_hidden[[0, 6]] = math.inf
    kept_student, kept_teacher = [0, 2, 3, 4, 6], [1, 2, 3, 4, 5]
    removed = Cross(
        case.student_logits[kept_student], case.student_hidden[kept_student], case.student_index_embeds[kept_student],
        case.labels[kept_student], torch.tensor([2, 3]), case.teacher_logits[kept_teacher],
        case.teacher_hidden[kept_teacher], case.teacher_index_embeds[kept_teacher], case.teacher_labels[kept_teacher],
        torch.tensor([3, 2]), case.student_head, case.teacher_head,
    )
    (loss, parts), (expected, expected_parts) = masked.loss(proj), removed.loss(proj)
    torch.testing.assert_close(loss, expected)
    assert parts["tokens"].item() == 5
    for name in TERMS:
        torch.testing.assert_close(parts[name], expected_parts[name])


@pytest.mark.parametrize("counts", [((0, 3), (2, 0)), ((0,), (0,)), ((), ())])
def test_cma_empty_sides_give_zero_without_nan(counts):
    case, proj = cross_case(*counts).leaves(), projectors(cross_attention=True)
    loss, parts = case.loss(proj)
    assert loss.item() == 0.0 and all(parts[name].item() == 0 for name in TERMS)
    for grad in grads(loss, case.student_logits, case.student_hidden, *proj.parameters()):
        assert torch.equal(grad, torch.zeros_like(grad))


def test_cma_all_masked_is_zero_with_zero_gradients():
    case = cross_case().leaves()
    case.labels[:] = IGNORE_INDEX
    case.teacher_labels[:] = IGNORE_INDEX
    proj = projectors(cross_attention=True)
    loss, parts = case.loss(proj)
    assert loss.item() == 0.0 and parts["tokens"].item() == 0
    for grad in grads(loss, case.student_logits, case.student_hidden, *proj.parameters()):
        assert torch.equal(grad, torch.zeros_like(grad))


def test_cma_projector_gradients_match_finite_differences():
    case, proj = cross_case(), projectors(cross_attention=True)
    for weight in (proj.query.weight, proj.t2s.weight, proj.s2t.weight):
        finite_difference_check(lambda: case.loss(proj), weight, [(0, 0), (5, 3), (7, 7)])


def test_cma_training_only_the_projectors_lowers_t2s_ce():
    case, proj = cross_case(student_counts=(6, 5), teacher_counts=(6, 5), seed=3), projectors(cross_attention=True)
    history = t2s_ce_while_training(case, proj)
    assert history[-1] < 0.5 * history[0]


def test_cma_chunked_equals_unchunked():
    """Row chunks of the read-outs (recomputed in backward) give the same loss, parts and gradients."""
    case, proj = cross_case(student_counts=(5, 4), teacher_counts=(3, 6), seed=2).leaves(), projectors(True)
    case.labels[2] = IGNORE_INDEX
    results = []
    for chunk_size in (None, 2, 4):
        loss, parts = case.loss(proj, divergence="jsd", beta=0.3, temperature=1.5, chunk_size=chunk_size)
        leaves = (case.student_logits, case.student_hidden, *proj.parameters())
        results.append((loss, *(parts[name] for name in (*TERMS, "t2s_accuracy")), *grads(loss, *leaves)))
    for unchunked, *chunked in zip(*results):
        for value in chunked:
            torch.testing.assert_close(value, unchunked)


@pytest.mark.parametrize("cross", [False, True])
def test_temperature_squared_scales_both_kd_terms_and_not_the_projector_ce(cross):
    case = cross_case() if cross else same_case()
    proj = projectors(cross_attention=cross)
    _, plain = case.loss(proj, temperature=2.0)
    scaled_loss, scaled = case.loss(proj, temperature=2.0, scale_by_temperature_squared=True)
    torch.testing.assert_close(scaled["t2s_ce"], plain["t2s_ce"])
    for name in ("t2s_kd", "s2t_kd"):
        torch.testing.assert_close(scaled[name], 4 * plain[name])
    torch.testing.assert_close(scaled_loss.detach(), sum(scaled[name] for name in TERMS))


def test_cma_bad_arguments_are_rejected():
    case = cross_case()
    with pytest.raises(ValueError, match="chunk_size"):
        case.loss(projectors(cross_attention=True), chunk_size=0)
    with pytest.raises(ValueError, match="cross_attention=True"):
        case.loss(projectors(cross_attention=False))
    with pytest.raises(ValueError, match="counts sum"):
        replace(case, student_counts=torch.tensor([3, 3])).loss(projectors(cross_attention=True))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        replace(case, teacher_counts=torch.tensor([6])).loss(projectors(cross_attention=True))
