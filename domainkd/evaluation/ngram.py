"""N-gram metrics against the reference answer: BLEU, chrF, ROUGE-1/2/L and METEOR.

All are sentence-level (one score per answer, so systems can be compared example by
example) and scaled to [0, 1]. BLEU is sacrebleu's ``sentence_bleu`` (exponential
smoothing, effective order), chrF is sacrebleu's ``sentence_chrf`` (character 6-grams,
β = 2), ROUGE is Google's ``rouge-score`` F-measure with the Porter stemmer, METEOR is
NLTK's (exact, Porter-stem and WordNet-synonym matches; α=0.9, β=3, γ=0.5) over
lower-cased word tokens. Out-of-scope questions have no reference and score ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from domainkd.evaluation.metrics import reference_answer
from domainkd.evaluation.registry import Example, MetricContext, Row, register_metric

_WORD = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")


def word_tokens(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (``09:20`` → ``09 : 20``, ``HR-22`` stays whole)."""
    return _WORD.findall(text.lower())


def _per_reference(function: Callable[[str, str], float]) -> Callable[[list[Row], list[Example], MetricContext], list[float | None]]:
    def score_batch(rows: list[Row], examples: list[Example], context: MetricContext) -> list[float | None]:
        scores: list[float | None] = []
        for row, example in zip(rows, examples):
            reference = reference_answer(example)
            scores.append(None if reference is None else function(row["prediction"], reference))
        return scores

    return score_batch


def sentence_bleu(prediction: str, reference: str) -> float:
    """sacrebleu sentence BLEU (exp smoothing, effective order) in [0, 1]."""
    import sacrebleu

    return sacrebleu.sentence_bleu(prediction, [reference]).score / 100.0


def sentence_chrf(prediction: str, reference: str) -> float:
    """sacrebleu sentence chrF (char 6-grams, β=2) in [0, 1]."""
    import sacrebleu

    return sacrebleu.sentence_chrf(prediction, [reference]).score / 100.0


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def _rouge(kind: str) -> Callable[[str, str], float]:
    def score(prediction: str, reference: str) -> float:
        return _rouge_scorer().score(reference, prediction)[kind].fmeasure

    return score


def meteor(prediction: str, reference: str, wordnet: Any = None) -> float:
    """NLTK METEOR with WordNet synonyms (``wordnet``: an NLTK WordNet reader; default the installed one)."""
    from nltk.translate.meteor_score import single_meteor_score

    if wordnet is None:
        from domainkd.evaluation.wordnet import load_wordnet

        wordnet = load_wordnet()
    return float(single_meteor_score(word_tokens(reference), word_tokens(prediction), wordnet=wordnet))


register_metric("bleu", "n-gram", True, "sentence BLEU against the reference (sacrebleu, exp smoothing)")(_per_reference(sentence_bleu))
register_metric("chrf", "n-gram", True, "sentence chrF against the reference (sacrebleu)")(_per_reference(sentence_chrf))
register_metric("rouge_1", "n-gram", True, "ROUGE-1 F-measure against the reference (stemmed)")(_per_reference(_rouge("rouge1")))
register_metric("rouge_2", "n-gram", True, "ROUGE-2 F-measure against the reference (stemmed)")(_per_reference(_rouge("rouge2")))
register_metric("rouge_l", "n-gram", True, "ROUGE-L F-measure against the reference (stemmed)")(_per_reference(_rouge("rougeL")))
register_metric("meteor", "n-gram", True, "METEOR against the reference (NLTK; exact, stem and WordNet synonym matches)")(
    _per_reference(meteor)
)
