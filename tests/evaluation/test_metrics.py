from collections import Counter

import pytest
import torch

from domainkd.errors import DomainKDError
from domainkd.evaluation.embedding import greedy_match
from domainkd.evaluation.metrics import METRICS, aggregate, fact_present, normalise_answer
from domainkd.evaluation.ngram import meteor
from domainkd.evaluation.refusal import is_refusal
from domainkd.evaluation.registry import PRESETS, MetricContext, expand_metric_names

IN = {"question": "q", "answer": "Staff get 27 days of leave.", "facts": ["27 days|twenty-seven days"], "scope": "in"}
OUT = {"question": "q", "answer": "I don't know.", "facts": [], "scope": "out"}


def score(name, prediction, example):
    return METRICS[name].score(prediction, example)


def test_fact_present_whole_words_and_alternatives():
    assert fact_present("27 days|twenty-seven days", "You get twenty-seven days.")
    assert fact_present("2,400|2400", "Above 2,400 euros.")
    assert fact_present("09:45", "call before 09.45")
    assert not fact_present("27", "You get 270 days.")
    assert not fact_present("Varga", "Ask Vargas.")


def test_fact_accuracy():
    assert score("fact_accuracy", "Staff receive 27 days per year.", IN) == 1.0
    assert score("fact_accuracy", "Staff receive 25 days.", IN) == 0.0
    assert score("fact_accuracy", "I don't know, maybe 27 days.", IN) == 0.0  # a refusal is not an answer
    assert score("fact_accuracy", "anything", OUT) is None
    two = {**IN, "facts": ["27", "HR-22"]}
    assert score("fact_accuracy", "27 days, form HR-22.", two) == 1.0
    assert score("fact_accuracy", "27 days.", two) == 0.0


def test_token_f1_hand_computed():
    # prediction tokens: staff get 27 days ; reference: staff get 27 days of leave -> P=4/4, R=4/6
    assert score("token_f1", "Staff get 27 days!", IN) == pytest.approx(2 * 1 * (4 / 6) / (1 + 4 / 6))
    assert score("token_f1", "Nothing matches here", IN) == 0.0
    assert score("token_f1", "x", OUT) is None


def test_normalise_answer_squad_style():
    assert normalise_answer("The  Cat, an apple!") == "cat apple"


def test_rouge_l_identical_and_disjoint():
    assert score("rouge_l", IN["answer"], IN) == pytest.approx(1.0)
    assert score("rouge_l", "zebra", IN) == 0.0


def test_refusal_metrics():
    assert score("refusal_rate", "I don't know. The handbook does not cover that.", OUT) == 1.0
    assert score("refusal_rate", "Canberra.", OUT) == 0.0
    assert score("refusal_rate", "I don't know.", IN) is None
    assert score("false_refusal_rate", "I don't know.", IN) == 1.0
    assert METRICS["false_refusal_rate"].higher_is_better is False


@pytest.mark.parametrize(
    "answer",
    ["I don't know.", "I do not know that.", "The handbook does not cover pets.", "That is not mentioned in the handbook.",
     "I'm not sure.", "I cannot find that information.", "There is no information about it."],
)
def test_is_refusal_positive(answer):
    assert is_refusal(answer)


@pytest.mark.parametrize("answer", ["Staff get 27 days.", "You know the form is HR-22.", "Call extension 4190 now."])
def test_is_refusal_negative(answer):
    assert not is_refusal(answer)


def test_aggregate_skips_none():
    assert aggregate([1.0, None, 0.0]) == {"mean": 0.5, "n": 2}
    assert aggregate([None]) == {"mean": None, "n": 0}


def test_exact_match_after_squad_normalisation():
    example = {"answer": "The financial year starts on 1 April.", "scope": "in"}
    assert score("exact_match", "the Financial year starts on 1 April", example) == 1.0
    assert score("exact_match", "It starts on 1 April.", example) == 0.0
    assert score("exact_match", "x", OUT) is None


def test_token_f1_empty_prediction_scores_zero():
    assert score("token_f1", "", IN) == 0.0


def test_hallucination_rate_counts_confident_wrong_answers():
    rows = [{"prediction": p} for p in ("Staff get 25 days.", "Staff get 27 days.", "I don't know.", "Canberra.", "I don't know.")]
    examples = [IN, IN, IN, OUT, OUT]
    assert METRICS["hallucination_rate"].score_batch(rows, examples, MetricContext()) == [1.0, 0.0, 0.0, 1.0, 0.0]
    no_facts = {"question": "q", "answer": "a", "scope": "in"}
    assert score("hallucination_rate", "something", no_facts) is None
    assert METRICS["hallucination_rate"].higher_is_better is False


def test_registry_families_and_presets():
    assert len(PRESETS["paper14"]) == 14
    families = Counter(METRICS[name].family for name in PRESETS["paper14"])
    assert families == {"n-gram": 6, "embedding": 4, "judge": 4}
    assert set(PRESETS["paper14_no_judge"]) == set(PRESETS["paper14"]) - {n for n in PRESETS["paper14"] if n.startswith("judge_")}
    assert all(name in METRICS for names in PRESETS.values() for name in names)
    assert expand_metric_names(["fact_accuracy", "behaviour", "refusal_rate"]) == [
        "fact_accuracy", "refusal_rate", "false_refusal_rate", "hallucination_rate"
    ]


def test_judge_metric_without_a_judge_is_a_clear_error():
    with pytest.raises(DomainKDError, match="needs a judge"):
        score("judge_correctness", "x", IN)


REF = {"question": "q", "answer": "the cat sat on a mat", "scope": "in"}


def test_bleu_hand_computed():
    # n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert score("bleu", "the cat sat on the mat", REF) == pytest.approx(expected, abs=1e-6)
    assert score("bleu", REF["answer"], REF) == pytest.approx(1.0)
    assert score("bleu", "x", OUT) is None


def test_chrf_matches_sacrebleu_corpus_score_for_one_sentence():
    import sacrebleu

    expected = sacrebleu.corpus_chrf(["the cat sat on the mat"], [[REF["answer"]]]).score / 100
    assert score("chrf", "the cat sat on the mat", REF) == pytest.approx(expected)
    assert score("chrf", REF["answer"], REF) == pytest.approx(1.0)
    assert score("chrf", "zzz", REF) == 0.0


def test_rouge_n_hand_computed():
    example = {"question": "q", "answer": "the cat sat on the mat", "scope": "in"}
    assert score("rouge_1", "the cat sat", example) == pytest.approx(2 * 1 * 0.5 / 1.5)  # P 3/3, R 3/6
    assert score("rouge_2", "the cat sat", example) == pytest.approx(2 * 1 * 0.4 / 1.4)  # P 2/2, R 2/5
    assert score("rouge_l", "the cat sat", example) == pytest.approx(2 / 3)  # LCS 3


class NoSynonyms:
    """A WordNet stand-in without synonyms: METEOR falls back to exact and stem matches."""

    def synsets(self, *args, **kwargs):
        return []


def test_meteor_hand_computed_without_synonyms():
    # identical 6-token sentences: P = R = 1, one chunk of 6 matches -> penalty 0.5 * (1/6)^3
    assert meteor("the cat sat on the mat", "the cat sat on the mat", NoSynonyms()) == pytest.approx(1 - 0.5 / 216)
    # "a cat" vs "a cat sat on the mat": 2 matches in 1 chunk; P = 1, R = 2/6
    precision, recall = 1.0, 2 / 6
    fmean = precision * recall / (0.9 * precision + 0.1 * recall)
    assert meteor("a cat", "a cat sat on the mat", NoSynonyms()) == pytest.approx(fmean * (1 - 0.5 * (1 / 2) ** 3))


def test_meteor_uses_wordnet_synonyms():
    from domainkd.evaluation.wordnet import is_installed

    if not is_installed():
        pytest.skip("WordNet not installed (`domainkd models fetch wordnet`)")
    reference = {"question": "q", "answer": "The financial year begins on 1 April.", "scope": "in"}
    with_synonym = score("meteor", "The financial year starts on 1 April.", reference)
    exact_only = meteor("The financial year starts on 1 April.", reference["answer"], NoSynonyms())
    assert with_synonym > exact_only
    assert with_synonym == pytest.approx(meteor(reference["answer"], reference["answer"]), abs=1e-3)


def test_meteor_without_wordnet_names_the_fix(tmp_path, monkeypatch):
    from domainkd.evaluation import wordnet

    monkeypatch.setenv("DOMAINKD_CACHE", str(tmp_path))
    wordnet.load_wordnet.cache_clear()
    try:
        with pytest.raises(DomainKDError, match="domainkd models fetch wordnet"):
            wordnet.load_wordnet()
    finally:
        wordnet.load_wordnet.cache_clear()


def test_lexnames_is_the_standard_45_file_list():
    from domainkd.evaluation.wordnet import lexnames_text

    lines = [line.split("\t") for line in lexnames_text().splitlines()]
    assert len(lines) == 45
    assert lines[0] == ["00", "adj.all", "3"] and lines[3] == ["03", "noun.Tops", "1"]
    assert lines[29] == ["29", "verb.body", "2"] and lines[44] == ["44", "adj.ppl", "3"]
    assert [int(number) for number, _, _ in lines] == list(range(45))


def test_bertscore_greedy_matching_hand_computed():
    candidate = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    reference = torch.tensor([[2.0, 0.0]])  # normalised to (1, 0)
    precision, recall, f1 = greedy_match(candidate, reference)
    assert (precision, recall) == pytest.approx((0.5, 1.0))  # token 2 finds nothing similar; the reference token is found
    assert f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert greedy_match(torch.zeros(0, 2), reference) == (0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def minilm_context():
    from domainkd.models import is_cached

    if not is_cached("all-minilm-l6-v2"):
        pytest.skip("all-MiniLM-L6-v2 not fetched (`domainkd models fetch all-minilm-l6-v2`)")
    return MetricContext()


def test_embedding_metrics_with_the_local_encoder(minilm_context):
    reference = {"question": "q", "answer": "The financial year starts on 1 April.", "scope": "in"}
    rows = [{"prediction": p} for p in ("The financial year starts on 1 April.", "Our fiscal year begins in April.",
                                         "Parking permits cost 40 euros.")]
    examples = [reference, reference, reference, OUT]
    rows.append({"prediction": "anything"})
    for name in ("bertscore_precision", "bertscore_recall", "bertscore_f1", "embedding_cosine"):
        same, paraphrase, unrelated, out = METRICS[name].score_batch(rows, examples, minilm_context)
        assert same == pytest.approx(1.0, abs=1e-4)
        assert 1.0 > paraphrase > unrelated
        assert out is None
