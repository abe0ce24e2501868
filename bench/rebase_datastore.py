"""ReBase datastore at scale: build rate (encoding, indexing), size on disk and query latency.

Synthesises ``--rows`` rows (default 1,000,000) deterministically from word lists in four
dataset families (news headline + topic, NLI premise/hypothesis/label, trivia question/answer,
product review + rating), written to Parquet in batches, builds a datastore from them with the
real encoder, then times ``--queries`` ReBase queries (instruction + 3 examples each; 3 warm-up
queries not counted). Memory stays flat: rows are streamed in batches, never held as dicts.

With ``--encode-rows M < --rows`` only the first M/4 rows of each family are encoded for real
(that is the measured encoding rate); the other values get *perturbed copies* of those real
vectors (cosine ≈ 0.9 to a random real vector), so the index and query latency can be measured
at full size in minutes. The JSON and the table say so in ``vectors``.

    python bench/rebase_datastore.py --rows 20000                      # minutes: everything real
    python bench/rebase_datastore.py --rows 1000000 --encode-rows 40000
    python bench/rebase_datastore.py                                   # 1M rows, all encoded (hours on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from domainkd.retrieval import (
    DEFAULT_ENCODER,
    DatasetSpec,
    IndexSettings,
    SentenceEncoder,
    TaskExample,
    build_datastore,
    encode_query,
    load_encoder,
    open_datastore,
    read_manifest,
    search_rows,
)
from domainkd.retrieval.encoder import normalise_rows
from domainkd.retrieval.query import best_distinct, score_rows

WRITE_BATCH = 50_000

# --- word lists -------------------------------------------------------------------------------
# fmt: off
SYLLABLES = ["ka", "lo", "ver", "mi", "dan", "sel", "to", "bra", "nor", "quel", "ti", "ros", "am", "bel", "fen",
             "dor", "lu", "sar", "gan", "vi", "mon", "tes", "cal", "rin", "ost", "pel", "zan"]
CITIES = ["Lyon", "Porto", "Bergen", "Turin", "Ghent", "Krakow", "Aarhus", "Leeds", "Bilbao", "Graz", "Utrecht",
          "Malmo", "Brno", "Split", "Cork", "Tartu", "Riga", "Lille", "Basel", "Nantes"]
ORGS = ["The city council", "A regional bank", "The health ministry", "A local startup", "The national museum",
        "A football club", "The university hospital", "An energy company", "The transport authority",
        "A farmers' union", "The central bank", "A software firm", "The school board", "An airline",
        "The weather service", "A research institute"]
TOPICS = {  # topic -> (verbs, objects)
    "politics": (["approves", "rejects", "debates", "delays"],
                 ["new budget", "voting reform", "housing plan", "tax cut", "border policy"]),
    "business": (["reports", "announces", "cuts", "doubles"],
                 ["quarterly profits", "job openings", "export sales", "new factory", "merger talks"]),
    "sport": (["wins", "loses", "hosts", "cancels"],
              ["cup final", "home match", "marathon", "title race", "training camp"]),
    "science": (["discovers", "publishes", "tests", "measures"],
                ["new enzyme", "rare fossil", "quantum sensor", "comet dust", "gene variant"]),
    "health": (["warns about", "funds", "expands", "reviews"],
               ["flu vaccines", "waiting lists", "mental health care", "night clinics", "heat stroke"]),
    "culture": (["opens", "restores", "celebrates", "sells"],
                ["painting exhibition", "film festival", "old theatre", "poetry prize", "jazz week"]),
}
WHEN = ["on Monday", "after long talks", "this spring", "despite protests", "for the first time", "amid rising costs",
        "ahead of the election", "late on Friday", "in a surprise move", "after a public vote"]
PEOPLE = ["A young woman", "An old man", "A little girl", "Two boys", "A chef", "A nurse", "A cyclist",
          "A group of students", "A police officer", "A farmer", "A teenager", "A musician"]
ACTIONS = [  # (verb, object, gist an entailed hypothesis states)
    ("is reading", "a newspaper", "reading"), ("is painting", "a fence", "painting"),
    ("is carrying", "a heavy box", "carrying something"), ("is playing", "a guitar", "playing music"),
    ("is cooking", "a large meal", "cooking"), ("is repairing", "a bicycle", "fixing something"),
    ("is feeding", "a dog", "feeding an animal"), ("is selling", "fresh fruit", "selling food"),
]
OTHER_ACTIONS = ["is sleeping", "is swimming", "is driving a bus", "is watching television", "is sitting alone at home"]
PLACES = ["in the park", "on a crowded street", "near the river", "inside a small shop", "at the train station",
          "on the beach", "in a busy kitchen", "behind the school"]
ATTRIBUTES = [("the population of", "people"), ("the founding year of", ""), ("the highest mountain in", "Mount"),
              ("the main river of", "the"), ("the currency of", "the"), ("the official language of", ""),
              ("the capital of", "")]
PRODUCTS = ["blender", "phone case", "rain jacket", "coffee grinder", "desk lamp", "hiking boots", "kettle",
            "backpack", "keyboard", "vacuum cleaner", "tent", "e-reader"]
PRAISE = ["works perfectly", "feels very solid", "was worth every cent", "exceeded my expectations", "is easy to clean"]
COMPLAINTS = ["broke after a week", "is far too noisy", "arrived scratched", "stopped charging", "smells of plastic"]
EXTRAS = ["delivery was quick", "the manual is confusing", "my kids love it", "customer service never answered",
          "the colour is lovely"]
# fmt: on


def name(rng: np.random.Generator, count: int) -> list[str]:
    """Made-up proper names of 2–3 syllables ("Kaloven")."""
    lengths = rng.integers(2, 4, count)
    picks = rng.integers(0, len(SYLLABLES), (count, 3))
    return ["".join(SYLLABLES[p] for p in row[:n]).capitalize() for row, n in zip(picks, lengths)]


def pick(rng: np.random.Generator, items: list, count: int) -> list:
    """``count`` items drawn with replacement."""
    return [items[i] for i in rng.integers(0, len(items), count)]


def news(rng: np.random.Generator, count: int) -> dict[str, list[str]]:
    """Headline + topic rows ("The city council in Lyon approves new budget on Monday", politics)."""
    topics = pick(rng, list(TOPICS), count)
    orgs, whens, cities = pick(rng, ORGS, count), pick(rng, WHEN, count), pick(rng, CITIES, count)
    towns = name(rng, count)
    headlines = []
    for topic, org, when, city, town, (v, o) in zip(topics, orgs, whens, cities, towns, rng.integers(0, 4, (count, 2))):
        verbs, objects = TOPICS[topic]
        place = city if v % 2 else town
        headlines.append(f"{org} in {place} {verbs[v]} {objects[o % len(objects)]} {when}")
    return {"headline": headlines, "topic": topics}


def nli(rng: np.random.Generator, count: int) -> dict[str, list[str]]:
    """Premise / hypothesis / label rows, the hypothesis written to match the label."""
    people, places, actions = pick(rng, PEOPLE, count), pick(rng, PLACES, count), pick(rng, ACTIONS, count)
    labels = pick(rng, ["entailment", "neutral", "contradiction"], count)
    others, towns = pick(rng, OTHER_ACTIONS, count), name(rng, count)
    premises, hypotheses = [], []
    for person, place, (verb, obj, gist), label, other, town in zip(people, places, actions, labels, others, towns):
        premises.append(f"{person} {verb} {obj} {place} in {town}.")
        subject = person.split(" ", 1)[1] if person.startswith(("A ", "An ")) else person
        hypotheses.append(
            {
                "entailment": f"Someone is {gist}.",
                "neutral": f"The {subject.lower()} {verb} {obj} for a friend.",
                "contradiction": f"The {subject.lower()} {other}.",
            }[label]
        )
    return {"premise": premises, "hypothesis": hypotheses, "label": labels}


def trivia(rng: np.random.Generator, count: int) -> dict[str, list[str]]:
    """Question / short-answer rows about made-up places."""
    attributes, places, years = pick(rng, ATTRIBUTES, count), name(rng, count), rng.integers(1200, 1990, count)
    answers_names, numbers = name(rng, count), rng.integers(2, 900, count)
    questions, answers = [], []
    for (attribute, prefix), place, year, answer_name, number in zip(attributes, places, years, answers_names, numbers):
        questions.append(f"What is {attribute} {place}?")
        if attribute.startswith("the population"):
            answers.append(f"{number * 1000:,} people")
        elif attribute.startswith("the founding"):
            answers.append(str(year))
        else:
            answers.append(f"{prefix} {answer_name}".strip())
    return {"question": questions, "answer": answers}


def reviews(rng: np.random.Generator, count: int) -> dict[str, list[str]]:
    """Product review + 1–5 rating rows, the wording following the rating."""
    ratings = rng.integers(1, 6, count)
    products, extras = pick(rng, PRODUCTS, count), pick(rng, EXTRAS, count)
    praise, complaints, brands = pick(rng, PRAISE, count), pick(rng, COMPLAINTS, count), name(rng, count)
    texts = []
    for rating, product, extra, good, bad, brand in zip(ratings, products, extras, praise, complaints, brands):
        verdict = good if rating >= 4 else bad if rating <= 2 else f"{good} but {bad}"
        texts.append(f"This {brand} {product} {verdict}; {extra}.")
    return {"review": texts, "rating": [str(r) for r in ratings]}


FAMILIES = {"news_headlines": news, "nli_pairs": nli, "trivia_qa": trivia, "product_reviews": reviews}
TASKS = {  # family -> (instruction, input column, output column)
    "news_headlines": ("Classify the news headline into its topic.", "headline", "topic"),
    "nli_pairs": (
        "Decide whether the premise entails, contradicts or is neutral to the hypothesis.",
        "premise",
        "label",
    ),
    "trivia_qa": ("Answer the geography or history question with a short fact.", "question", "answer"),
    "product_reviews": ("Rate the product review from 1 to 5 stars.", "review", "rating"),
}


def write_datasets(directory: Path, rows: int) -> list[DatasetSpec]:
    """One Parquet file per family, rows/4 rows each, written in batches (kept when already there: same seeds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    specs = []
    for number, (family, make) in enumerate(FAMILIES.items()):
        path, count = directory / f"{family}.parquet", rows // len(FAMILIES) + (number < rows % len(FAMILIES))
        specs.append(DatasetSpec(path))
        if path.is_file() and pq.ParquetFile(path).metadata.num_rows == count:
            continue  # unchanged files keep the store's fingerprint: a rerun only times the queries
        writer = None
        for start in range(0, count, WRITE_BATCH):
            table = pa.table(make(np.random.default_rng([number, start]), min(WRITE_BATCH, count - start)))
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        writer.close()
    return specs


class PooledEncoder(SentenceEncoder):
    """Real vectors for the texts of a real-encoded pool; perturbed copies of pool vectors for all others."""

    def __init__(
        self, encoder: SentenceEncoder, pool: dict[str, int], vectors: np.ndarray, noise: float = 0.024
    ) -> None:
        super().__init__(encoder.reference, encoder.directory, encoder.model)
        self.pool, self.vectors, self.noise, self.copied = pool, vectors, noise, 0

    def identity(self):
        return {**super().identity(), "pooled_real_texts": len(self.pool)}  # never mistaken for a real store

    def encode(self, texts, batch_size=128):
        found = [self.pool.get(text, -1) for text in texts]
        misses = [i for i, index in enumerate(found) if index < 0]
        seeds = [zlib.crc32(texts[i].encode("utf-8")) for i in misses]
        for i, seed in zip(misses, seeds):
            found[i] = seed % len(self.vectors)
        vectors = self.vectors[found].copy()  # (N, D)
        if misses:
            rng = np.random.default_rng(seeds[0])
            vectors[misses] += rng.normal(0.0, self.noise, (len(misses), vectors.shape[1])).astype(np.float32)
        self.copied += len(misses)
        return normalise_rows(vectors)


def real_pool(encoder: SentenceEncoder, specs: list[DatasetSpec], rows_per_family: int) -> tuple[PooledEncoder, dict]:
    """Encode the first rows of each family for real (timed); wrap the vectors as a pooled encoder."""
    import pyarrow.parquet as pq

    texts: list[str] = []
    for spec in specs:
        batch = next(pq.ParquetFile(spec.path).iter_batches(batch_size=max(1, rows_per_family)))
        texts += [value for column in batch.columns for value in column.to_pylist()]
    texts = list(dict.fromkeys(texts))
    started = time.perf_counter()
    vectors = np.concatenate([encoder.encode(texts[i : i + 8192]) for i in range(0, len(texts), 8192)])
    seconds = time.perf_counter() - started
    pooled = PooledEncoder(encoder, {text: i for i, text in enumerate(texts)}, vectors)
    rows = rows_per_family * len(specs)
    return pooled, {
        "rows": rows,
        "texts": len(texts),
        "seconds": round(seconds, 1),
        "texts_per_s": round(len(texts) / seconds, 1),
    }


def make_queries(count: int) -> list[tuple[str, list[TaskExample]]]:
    """``count`` tasks (families in turn), each an instruction and 3 fresh examples (other seeds than the datastore)."""
    queries = []
    for number in range(count):
        family = list(FAMILIES)[number % len(FAMILIES)]
        instruction, input_column, output_column = TASKS[family]
        rows = FAMILIES[family](np.random.default_rng([99, number]), 3)
        queries.append((instruction, [TaskExample(i, o) for i, o in zip(rows[input_column], rows[output_column])]))
    return queries


def time_queries(
    store_path: Path, encoder: SentenceEncoder, count: int, top_k: int, nprobe: int, candidate_k: int | None
) -> dict:
    """Median and p95 latency (ms) of encoding and searching ``count`` queries, after 3 warm-up queries."""
    started = time.perf_counter()
    store = open_datastore(store_path, nprobe)
    open_seconds = time.perf_counter() - started
    encode_ms, search_ms, total_ms, returned = [], [], [], []
    for number, (instruction, examples) in enumerate(make_queries(count + 3)):
        started = time.perf_counter()
        vectors = encode_query(encoder, instruction, examples)
        encoded = time.perf_counter()
        rows = search_rows(store, vectors, top_k, candidate_k=candidate_k)
        done = time.perf_counter()
        if number >= 3:
            encode_ms.append(1000 * (encoded - started))
            search_ms.append(1000 * (done - encoded))
            total_ms.append(1000 * (done - started))
            returned.append(len(rows))
    summary = {
        "queries": count,
        "top_k": top_k,
        "nprobe": nprobe,
        "candidate_k": candidate_k or "default",
        "index_in_memory": store.index.in_memory,
        "open_seconds": round(open_seconds, 2),
        "mean_rows_returned": round(statistics.mean(returned), 1),
    }
    for label, values in (("encode", encode_ms), ("search", search_ms), ("total", total_ms)):
        summary[f"{label}_ms_median"] = round(statistics.median(values), 1)
        summary[f"{label}_ms_p95"] = round(float(np.percentile(values, 95)), 1)
    return summary


def exact_top_rows(store, query, top_k: int, chunk: int = 50_000) -> set[int]:
    """The ``top_k`` rows of an exact scan of every row (identical rows once), for recall."""
    ids, scores = [], []
    for start in range(0, len(store), chunk):
        rows = np.arange(start, min(start + chunk, len(store)))
        row_scores = score_rows(store, rows, query).score  # (chunk,)
        best = np.argsort(-row_scores)[: 4 * top_k]
        ids.append(rows[best])
        scores.append(row_scores[best])
    ids, scores = np.concatenate(ids), np.concatenate(scores)
    return {int(ids[position]) for position in best_distinct(ids, scores, store.row_hashes, top_k)}


def recall(
    store_path: Path, encoder: SentenceEncoder, count: int, top_k: int, nprobe: int, candidate_k: int | None
) -> float:
    """Mean share of the exact top-k rows that the index-backed search returns, over ``count`` queries."""
    store = open_datastore(store_path, nprobe)
    shares = []
    for instruction, examples in make_queries(count):
        query = encode_query(encoder, instruction, examples)
        found = {row.row_id for row in search_rows(store, query, top_k, candidate_k=candidate_k)}
        shares.append(len(found & exact_top_rows(store, query, top_k)) / top_k)
    return round(statistics.mean(shares), 3)


def disk_sizes(store: Path) -> dict[str, float]:
    """MB per file of the store, and the total."""
    sizes = {path.name: round(path.stat().st_size / 1e6, 1) for path in sorted(store.iterdir())}
    return {**sizes, "total": round(sum(sizes.values()), 1)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--encode-rows", type=int, default=None, help="rows encoded for real (default: all)")
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--recall-queries", type=int, default=4, help="queries also checked by an exact scan")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--nprobe", type=int, default=IndexSettings.nprobe)
    parser.add_argument("--candidate-k", type=int, default=None, help="nearest values per example text")
    parser.add_argument("--flat-limit", type=int, default=IndexSettings.flat_limit)
    parser.add_argument("--codec", choices=["flat", "sq8"], default="flat")
    parser.add_argument("--threads", type=int, default=None, help="torch and FAISS threads (default: theirs)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep datasets and store here (reused)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/rebase_datastore.json"))
    return parser.parse_args()


def build_store(args: argparse.Namespace, workdir: Path, encoder: SentenceEncoder) -> dict:
    """Write the datasets and build the store (real or pooled vectors); the build measures."""
    started = time.perf_counter()
    specs = write_datasets(workdir, args.rows)
    result = {"generate_seconds": round(time.perf_counter() - started, 1)}
    real_rows = min(args.rows, args.encode_rows or args.rows)
    build_encoder, sample = encoder, None
    if real_rows < args.rows:
        build_encoder, sample = real_pool(encoder, specs, real_rows // len(FAMILIES))
    settings = IndexSettings(flat_limit=args.flat_limit, nprobe=args.nprobe, codec=args.codec)
    started = time.perf_counter()
    result["rebuilt"] = build_datastore(workdir / "store", specs, build_encoder, settings)
    result["build_seconds"] = round(time.perf_counter() - started, 1)
    manifest = read_manifest(workdir / "store")
    build = manifest["build"]
    result.update(datasets=len(specs), values=build["values"], index=manifest["index"])
    if sample is None:
        result["vectors"] = "real: every value encoded"
        result["encode_texts_per_s"] = round(build["encoded_texts"] / max(build["encode_seconds"], 1e-9), 1)
        result["encode_rows_per_s"] = round(build["rows"] / max(build["encode_seconds"], 1e-9), 1)
    else:
        result["vectors"] = (
            f"PARTLY SYNTHETIC: {sample['texts']} distinct texts of {sample['rows']} rows encoded for real; "
            f"{build_encoder.copied} other values got perturbed copies of real vectors (cosine ~0.9)"
        )
        result["encode_texts_per_s"] = sample["texts_per_s"]
        result["encode_rows_per_s"] = round(sample["rows"] / max(sample["seconds"], 1e-9), 1)
    result["flatten_rows_per_s"] = round(build["rows"] / max(build["flatten_seconds"], 1e-9), 1)
    result["index_values_per_s"] = round(build["values"] / max(build["index_seconds"], 1e-9), 1)
    return {**result, "build_manifest": build}


def main() -> None:
    args = parse_args()
    if args.threads:
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rebase-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(args.encoder)
    result = {"rows": args.rows, "encoder": args.encoder, "threads": args.threads or "default"}
    result.update(build_store(args, workdir, encoder))
    result["disk_mb"] = disk_sizes(workdir / "store")
    query_args = (args.top_k, args.nprobe, args.candidate_k)
    result["latency"] = time_queries(workdir / "store", encoder, args.queries, *query_args)
    if args.recall_queries:
        result["recall_vs_exact_scan"] = recall(workdir / "store", encoder, args.recall_queries, *query_args)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.workdir is None:
        shutil.rmtree(workdir)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("| measure | value |\n|---|---:|")
    for key, value in result.items():
        if key != "build_manifest":
            print(f"| {key} | {value} |")
    print(f"JSON: {args.output}")


if __name__ == "__main__":
    main()
