"""Winner per metric: the leader by mean, and whether Holm-corrected tests separate it from each other system."""

from __future__ import annotations

from domainkd.reporting.markdown import winner_table
from domainkd.reporting.verdicts import verdict_sentence, verdicts


def _metrics() -> dict:
    def scores(**means):
        return {metric: {"mean": mean} for metric, mean in means.items()}

    def pair(a, b, better, significant):
        return {"a": a, "b": b, "better": better, "significant": significant, "p_holm": 0.01 if significant else 0.4}

    return {
        "metrics": {
            "fact_accuracy": {"higher_is_better": True},
            "token_f1": {"higher_is_better": True},
            "hallucination_rate": {"higher_is_better": False},
            "bleu": {"higher_is_better": True},
        },
        "systems": {
            "base": {"scores": scores(fact_accuracy=0.10, token_f1=0.30, hallucination_rate=0.50, bleu=None)},
            "rag": {"scores": scores(fact_accuracy=0.60, token_f1=0.41, hallucination_rate=0.20, bleu=None)},
            "distilled": {"scores": scores(fact_accuracy=0.40, token_f1=0.40, hallucination_rate=0.30, bleu=None)},
        },
        "comparisons": {
            "fact_accuracy": [
                pair("base", "rag", "rag", True), pair("base", "distilled", "distilled", True),
                pair("rag", "distilled", "rag", True),
            ],
            "token_f1": [
                pair("base", "rag", "rag", True), pair("base", "distilled", "distilled", True),
                pair("rag", "distilled", "rag", False),
            ],
            "hallucination_rate": [
                pair("base", "rag", "rag", False), pair("base", "distilled", "distilled", False),
                pair("rag", "distilled", "rag", False),
            ],
        },
    }


def test_verdicts_separate_clear_wins_partial_leads_and_ties() -> None:
    found = {verdict.metric: verdict for verdict in verdicts(_metrics())}
    assert set(found) == {"fact_accuracy", "token_f1", "hallucination_rate"}  # bleu was never scored
    clear = found["fact_accuracy"]
    assert (clear.leader, clear.beats, clear.ties, clear.clear) == ("rag", ["base", "distilled"], [], True)
    partial = found["token_f1"]
    assert (partial.leader, partial.beats, partial.ties, partial.clear) == ("rag", ["base"], ["distilled"], False)
    lower = found["hallucination_rate"]  # lower is better: rag leads with 20%
    assert (lower.leader, lower.beats, lower.ties) == ("rag", [], ["base", "distilled"])


def test_verdict_sentences_and_markdown_rows() -> None:
    found = {verdict.metric: verdict for verdict in verdicts(_metrics())}
    assert verdict_sentence(found["fact_accuracy"]) == "rag wins fact_accuracy (60.0%), significantly ahead of all 2 others"
    assert verdict_sentence(found["token_f1"]) == (
        "rag leads token_f1 (41.0%), significantly ahead of base; not separable from distilled"
    )
    assert "not significantly ahead of any other system" in verdict_sentence(found["hallucination_rate"])
    rows = winner_table(_metrics())
    assert "| fact_accuracy ↑ | **rag** | 60.0 | base, distilled | – |" in rows
    assert "| token_f1 ↑ | rag | 41.0 | base | distilled |" in rows
    assert "| hallucination_rate ↓ | rag | 20.0 | – | base, distilled |" in rows
