"""Retrieval-aware fine-tuning (RAFT, Zhang et al. 2024): training questions asked with retrieved excerpts.

A student that never read excerpts in training does not use them: the base SmolLM2-135M given
three retrieved handbook chunks answered 7% of the reworded questions and refused 43% of those
the chunks answered. RAFT trains on the prompt the student sees when it answers with retrieval
(:func:`domainkd.evaluation.systems.excerpt_prompt`, the layout of ``student_with_retrieval``,
``compare`` and ``serve --retrieval``), holding the chunks the configured retriever returns for
the training question:

* most copies hold a chunk with the answer among distractors (put in place of the last hit
  where retrieval missed it);
* a share (``without_gold``) leave out every chunk holding the answer; they are trained to
  refuse (the excerpts do not answer it) or to answer from memory (the paper's recipe);
* refusal examples get the excerpts retrieved for them, so the student refuses when the
  excerpts do not hold the answer, not only when the question sounds foreign;
* with ``answer: source`` a copy holding the answer is trained on the source sentence as the
  documents word it instead of the teacher's answer: extractive reading, finding and quoting
  the sentence that answers.

A chunk *holds the answer* when it contains the example's source fact (``fact``), or, for an
example without one, when it is the example's own chunk. Examples without a chunk (records, QA
sets, ReBase rows) and plain passages get no copy: their answer is in no excerpt.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from domainkd.config import RaftConfig, RunConfig
from domainkd.sources import Chunk

Example = dict[str, Any]


def raft_candidates(examples: Sequence[Example], params: RaftConfig) -> list[Example]:
    """The examples that can get an excerpt copy: document QA with a chunk, and refusals (if ``params.refusals``)."""
    eligible = []
    for example in examples:
        if example.get("question") is None or example.get("prompt") is not None:
            continue
        if example["strategy"] == "refusal":
            if params.refusals:
                eligible.append(example)
        elif example.get("chunk_id"):
            eligible.append(example)
    return eligible


def answer_chunks(example: Example, chunks: Sequence[Chunk]) -> set[str]:
    """Ids of the chunks that hold ``example``'s answer (none for a refusal)."""
    if example["strategy"] == "refusal":
        return set()
    fact = example.get("fact")
    holding = {chunk.chunk_id for chunk in chunks if fact and fact in chunk.text}
    return holding or {example["chunk_id"]}


def raft_examples(
    examples: Sequence[Example], chunks: Sequence[Chunk], search: Any, config: RunConfig
) -> list[Example]:
    """The training set with excerpt copies of a ``config.data.raft.share`` of the eligible ``examples``.

    The copies come last; the copied examples stay unless ``keep_closed_book`` is off.

    Args:
        examples: the training set so far (closed-book examples; they are not changed).
        chunks: the data stage's chunks.
        search: ``(questions, top_k) -> hits per question`` (a :class:`~domainkd.retrieval.chunks.ChunkRetriever`'s
            ``search``), best first.
        config: the run (its ``data.raft``, ``retrieval.top_k`` and ``refusal_text``).
    """
    from domainkd.evaluation.systems import excerpt_prompt

    params = config.data.raft
    top_k = params.top_k or config.retrieval.top_k
    rng = random.Random(params.seed)
    candidates = raft_candidates(examples, params)
    chosen = [example for example in candidates if rng.random() < params.share]
    copied = {id(example) for example in chosen}
    by_id = {chunk.chunk_id: chunk for chunk in chunks}
    holding = [answer_chunks(example, chunks) for example in chosen]
    # enough hits to leave out every answer chunk and still fill top_k
    depth = min(len(chunks), top_k + max((len(ids) for ids in holding), default=0))
    hits = search([example["question"] for example in chosen], depth) if chosen else []
    copies = []
    copied_pairs: set[tuple[str, str]] = set()  # with answer: source, a fact_answers twin gives the same copy
    for example, gold, found in zip(chosen, holding, hits):
        retrieved = [hit.chunk.chunk_id for hit in found]
        refusal = example["strategy"] == "refusal"
        without = refusal or rng.random() < params.without_gold
        excerpt_ids = _excerpt_ids(retrieved, gold, top_k, without, rng)
        if params.order == "shuffled":
            rng.shuffle(excerpt_ids)
        answer = example["answer"]
        if without and not refusal and params.without_gold_target == "refusal":
            answer = config.refusal_text
        elif not without and params.answer == "source" and example.get("fact"):
            answer = example["fact"]
            if (example["question"], answer) in copied_pairs:
                continue
            copied_pairs.add((example["question"], answer))
        copies.append({
            **example,
            "strategy": "raft",
            "source_strategy": example["strategy"],
            "variant": "refusal" if refusal else ("without_answer" if without else "with_answer"),
            "answer": answer,
            "excerpts": excerpt_ids,
            "prompt": excerpt_prompt(example["question"], [by_id[i] for i in excerpt_ids], config.refusal_text),
        })
    if params.keep_closed_book:
        return list(examples) + copies
    return [example for example in examples if id(example) not in copied] + copies


def _excerpt_ids(retrieved: list[str], gold: set[str], top_k: int, without: bool, rng: random.Random) -> list[str]:
    """``top_k`` chunk ids from ``retrieved`` (best first) without any ``gold`` one, or with at least one."""
    if without:
        return [chunk_id for chunk_id in retrieved if chunk_id not in gold][:top_k]
    excerpt_ids = retrieved[:top_k]
    if not gold & set(excerpt_ids):  # retrieval missed it: the answer's chunk replaces the last hit
        excerpt_ids = [*excerpt_ids[: top_k - 1], rng.choice(sorted(gold))]
    return excerpt_ids
