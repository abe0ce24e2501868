"""Where a ReBase query's time goes on a built datastore, and how balanced its IVF lists are.

Times each step of :func:`domainkd.retrieval.query.search_rows` on warm caches (every query is
run once before it is timed): the FAISS search of the examples' nearest values, collecting
their rows, reconstructing and scoring those rows' values, de-duplicating, and reading the
chosen rows. Then reports the IVF lists' sizes (FAISS's imbalance factor; a balanced index has
about ``values / nlist`` per list) and which values fill the largest lists. Writes JSON and
prints a table. With ``--scan-factors`` it also times whole ``search_rows`` calls (warm) at each
IVF scan cap (``VectorIndex.scan_factor``; 0 = no cap) and checks their rows against an exact
scan of every row on the first ``--recall-queries`` queries. Build a store first, e.g. with
``bench/rebase_datastore.py``:

    python bench/rebase_profile.py /tmp/rebase-bench-1m/store --queries 10 --scan-factors 0 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rebase_datastore import exact_top_rows, make_queries  # noqa: E402  (the benchmark's own task queries)

from domainkd.retrieval import encode_query, load_encoder, open_datastore  # noqa: E402
from domainkd.retrieval import query as rebase  # noqa: E402

STEPS = ("faiss_search", "collect_rows", "reconstruct", "score", "dedup", "read_rows")


def time_steps(store, vectors, top_k: int, candidate_k: int) -> dict[str, float]:
    """Milliseconds of each step of one query (the steps of ``search_rows``, in order)."""
    marks = [time.perf_counter()]
    queries = np.concatenate([vectors.inputs, vectors.outputs])
    _, value_ids = store.index.search(queries, candidate_k)
    marks.append(time.perf_counter())
    rows = store.rows_holding(np.unique(value_ids[value_ids >= 0]), rebase.ROWS_PER_VALUE)
    cells, local = store.row_cells(rows)
    ids, cell_index = np.unique(cells, return_inverse=True)
    marks.append(time.perf_counter())
    values = store.index.reconstruct(ids)
    marks.append(time.perf_counter())
    description = store.descriptions[store.row_datasets[rows]] @ vectors.instruction
    with rebase._blas_controller().limit(limits=1, user_api="blas"):
        scores = rebase.rebase_scores(values, local, vectors, description, cell_index)
    marks.append(time.perf_counter())
    chosen = rebase.best_distinct(rows, scores.score, store.row_hashes, top_k)
    marks.append(time.perf_counter())
    store.rows([int(rows[p]) for p in chosen])
    marks.append(time.perf_counter())
    return {step: 1000 * (b - a) for step, a, b in zip(STEPS, marks, marks[1:])}


def list_balance(store, largest: int = 5, sample: int = 200) -> dict:
    """IVF list sizes, the imbalance factor, and the most common values in the largest lists."""
    ivf = store.index.ivf
    if ivf is None:
        return {"index": "flat (no lists)"}
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    top = []
    for number in np.argsort(-sizes)[:largest]:
        size = int(sizes[number])
        ids = faiss.rev_swig_ptr(ivf.invlists.get_ids(int(number)), size).copy()
        texts = Counter(store.value(int(i))[3][:40] for i in ids[:: max(1, size // sample)])
        top.append({"size": size, "most_common_values": texts.most_common(3)})
    return {
        "nlist": int(ivf.nlist), "values": int(sizes.sum()), "mean_list": float(sizes.mean()),
        "largest_list": int(sizes.max()), "imbalance_factor": float(ivf.invlists.imbalance_factor()),
        "values_in_lists_over_10x_mean": int(sizes[sizes > 10 * sizes.mean()].sum()), "largest_lists": top,
    }


def scan_cap_effect(store, encoded: list, factors: list[float], top_k: int, candidate_k: int, recall_queries: int) -> dict:
    """Per scan factor: median warm ``search_rows`` ms and mean agreement with the exact top rows."""
    vectors = [v for v, _ in encoded]
    exact = [exact_top_rows(store, v, top_k) for v in vectors[:recall_queries]]
    effect = {}
    for factor in factors:
        store.index.scan_factor = factor
        times = []
        for query in vectors:
            rebase.search_rows(store, query, top_k, candidate_k=candidate_k)  # warm
            started = time.perf_counter()
            rebase.search_rows(store, query, top_k, candidate_k=candidate_k)
            times.append(1000 * (time.perf_counter() - started))
        found = [{row.row_id for row in rebase.search_rows(store, v, top_k, candidate_k=candidate_k)} for v in vectors]
        agreement = [len(rows & best) / top_k for rows, best in zip(found, exact)]
        effect[str(factor)] = {"search_rows_ms_median": float(np.median(times)), "agreement_with_exact": float(np.mean(agreement))}
    return effect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--candidate-k", type=int, default=512)
    parser.add_argument("--scan-factors", type=float, nargs="*", default=[], help="IVF scan caps to compare (0: none)")
    parser.add_argument("--recall-queries", type=int, default=4, help="queries checked against an exact scan")
    parser.add_argument("--output", type=Path, default=Path("bench/results/rebase_profile.json"))
    args = parser.parse_args()
    store = open_datastore(args.store)
    encoder = load_encoder(store.encoder_reference)
    encoded = []
    for instruction, examples in make_queries(args.queries):
        started = time.perf_counter()
        encoded.append((encode_query(encoder, instruction, examples), 1000 * (time.perf_counter() - started)))
    for vectors, _ in encoded:  # warm the memory-mapped index and row store
        rebase.search_rows(store, vectors, args.top_k, candidate_k=args.candidate_k)
    timings = [time_steps(store, vectors, args.top_k, args.candidate_k) for vectors, _ in encoded]
    medians = {"encode_query": float(np.median([ms for _, ms in encoded]))}
    medians |= {step: float(np.median([timing[step] for timing in timings])) for step in STEPS}
    stats = faiss.cvar.indexIVF_stats  # FAISS's global counters of IVF searches
    stats.reset()
    for vectors, _ in encoded:
        store.index.search(np.concatenate([vectors.inputs, vectors.outputs]), args.candidate_k)
    scanned = stats.ndis / max(1, stats.nq)
    result = {
        "store": str(args.store), "queries": args.queries, "top_k": args.top_k, "candidate_k": args.candidate_k,
        "median_ms": medians, "vectors_scanned_per_query_vector": scanned, "lists": list_balance(store),
    }
    if args.scan_factors:
        result["scan_factor"] = scan_cap_effect(
            store, encoded, args.scan_factors, args.top_k, args.candidate_k, args.recall_queries
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'step':24} {'median ms':>10}")
    for step, ms in medians.items():
        print(f"{step:24} {ms:10.2f}")
    lists = result["lists"]
    print(f"vectors scanned per query vector: {scanned:,.0f}")
    if "imbalance_factor" in lists:
        print(f"IVF lists: {lists['nlist']}, mean {lists['mean_list']:.0f}, largest {lists['largest_list']:,}, "
              f"imbalance factor {lists['imbalance_factor']:.1f}")
        for entry in lists["largest_lists"]:
            print(f"  {entry['size']:>8,}  {entry['most_common_values']}")
    for factor, effect in result.get("scan_factor", {}).items():
        print(f"scan factor {factor:>4}: search_rows {effect['search_rows_ms_median']:.1f} ms (warm median), "
              f"agreement with exact scan {100 * effect['agreement_with_exact']:.1f}%")


if __name__ == "__main__":
    main()
