"""Can a teacher's logits be compared with the student's, token for token?

Logit-level KD needs both models to mean the same token by the same logit column. Three
relations between two vocabularies decide what works:

- ``same``: one tokenizer (identical token → id map and special tokens) and equal logits sizes.
- ``same-prefix``: every token of the smaller vocabulary has the same id in the larger one,
  e.g. the Qwen2.5 sizes, whose logits differ only by padded embedding rows. Both sides'
  logits are cut to the shared columns (:func:`shared_vocab_size`, :func:`cut_to_shared_vocab`).
- ``different``: anything else; only cross-tokenizer losses could distil across it.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor
from transformers import PreTrainedTokenizerBase

from domainkd.errors import DomainKDError

VocabularyRelation = Literal["same", "same-prefix", "different"]

# Which vocabulary relations each KD loss of domainkd.distill.trainer.KD_LOSSES supports.
LOSS_VOCABULARIES: dict[str, set[str]] = {
    "vanilla": {"same", "same-prefix"},
    "dskd": {"same", "same-prefix", "different"},  # cross-model attention when different
    "uld": {"same", "same-prefix", "different"},
    "mined": {"different"},
}

_DESCRIPTIONS = {
    "same": "a teacher with the student's tokenizer",
    "same-prefix": "a teacher whose vocabulary shares the student's token ids",
    "different": "a teacher whose tokenizer differs from the student's",
}


def check_vocabularies(
    student_tokenizer: PreTrainedTokenizerBase,
    teacher_tokenizer: PreTrainedTokenizerBase,
    student_vocab_size: int,
    teacher_vocab_size: int,
) -> VocabularyRelation:
    """How the two vocabularies relate: ``"same"``, ``"same-prefix"`` or ``"different"``.

    Args:
        student_tokenizer: the student's tokenizer.
        teacher_tokenizer: the teacher's tokenizer.
        student_vocab_size: the student's logits dimension (output embedding rows).
        teacher_vocab_size: the teacher's logits dimension.
    """
    student_vocab, teacher_vocab = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    same_specials = student_tokenizer.all_special_tokens == teacher_tokenizer.all_special_tokens
    if student_vocab == teacher_vocab and same_specials and student_vocab_size == teacher_vocab_size:
        return "same"
    smaller, larger = sorted([student_vocab, teacher_vocab], key=len)
    if smaller.items() <= larger.items():
        return "same-prefix"
    return "different"


def require_compatible(relation: VocabularyRelation, loss_name: str) -> None:
    """Raise a one-sentence :class:`DomainKDError` unless ``loss_name`` works across ``relation``."""
    if relation in LOSS_VOCABULARIES.get(loss_name, set()):
        return
    working = [name for name, relations in LOSS_VOCABULARIES.items() if relation in relations]
    raise DomainKDError(
        f"train.kd.loss {loss_name!r} does not work with {_DESCRIPTIONS[relation]}; "
        f"use one of {', '.join(working) or 'none yet'} or set `train.kd: null` for plain SFT."
    )


def shared_vocab_size(
    student_tokenizer: PreTrainedTokenizerBase,
    teacher_tokenizer: PreTrainedTokenizerBase,
    student_vocab_size: int,
    teacher_vocab_size: int,
) -> int:
    """Logit columns both models give the same meaning: the smaller vocabulary, without padded rows.

    Only meaningful for ``same`` and ``same-prefix`` vocabularies (see :func:`check_vocabularies`).
    """
    return min(len(student_tokenizer), len(teacher_tokenizer), student_vocab_size, teacher_vocab_size)


def cut_to_shared_vocab(logits: Tensor, shared_size: int | None) -> Tensor:
    """``logits (..., V)`` → ``(..., shared_size)``, a view; ``None`` or a larger size keeps them whole."""
    return logits if shared_size is None else logits[..., :shared_size]


def require_ids_shared(max_token_id: int, shared_size: int) -> None:
    """Raise unless every token id of the training set lies in the shared vocabulary.

    The teacher reads the student's token ids, so a student-only token (an id at or past
    ``shared_size``) would be out of its vocabulary.
    """
    if max_token_id >= shared_size:
        raise DomainKDError(
            f"the training set holds student token id {max_token_id}, past the {shared_size} tokens the KD teacher "
            "shares with the student; set `train.kd.teacher` to a model with the student's tokenizer or use "
            "`train.kd: null`."
        )
