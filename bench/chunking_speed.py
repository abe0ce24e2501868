"""How long does `domainkd data` take to chunk a long document? Goal: a 4.9 MB one-line document in under 10 s.

Builds documents of several shapes in a temporary folder (one 4.9 MB line without sentence ends,
the worst case: it is cut into word runs; the same text as sentences on one line; as ordinary
lines), reads and chunks each the way `domainkd data` does (the student's tokenizer counting
tokens, 96-token chunks with 16 tokens of overlap, as the demo), and times it. Writes
``bench/results/chunking_speed.json`` and prints a Markdown table.

    python bench/chunking_speed.py [--megabytes 4.9] [--tokenizer smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

from domainkd.models import load_tokenizer
from domainkd.sources import chunk_sections, read_documents, tokenizer_counter

REPO = Path(__file__).resolve().parents[1]
WORDS = "pump basin valve flow pressure sample chlorine operator shift report gauge filter tank main".split()


def _text(shape: str, size: int, seed: int = 0) -> str:
    draw = random.Random(seed)
    words, length = [], 0
    while length < size:
        word = f"{draw.choice(WORDS)}{draw.randrange(1000)}"
        words.append(word)
        length += len(word) + 1
    if shape == "one line, no sentence ends":
        return " ".join(words)
    sentences = [" ".join(words[start : start + 15]).capitalize() + "." for start in range(0, len(words), 15)]
    if shape == "one line of sentences":
        return " ".join(sentences)
    return "\n".join(" ".join(sentences[start : start + 4]) for start in range(0, len(sentences), 4))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=4.9, help="below the 5 MB limit on a text document")
    parser.add_argument("--tokenizer", default="smollm2-135m-instruct")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "chunking_speed.json")
    args = parser.parse_args(argv)
    count = tokenizer_counter(load_tokenizer(args.tokenizer))

    results = []
    for shape in ("one line, no sentence ends", "one line of sentences", "lines of sentences"):
        with tempfile.TemporaryDirectory() as folder:
            document = Path(folder) / "long.txt"
            document.write_text(_text(shape, int(args.megabytes * 1_000_000)), encoding="utf-8")
            began = time.perf_counter()
            sections = read_documents(Path(folder))
            chunks = chunk_sections(sections, count, 96, 16)
            seconds = time.perf_counter() - began
        results.append({"shape": shape, "bytes": document_size(sections), "chunks": len(chunks),
                        "tokens": sum(chunk.tokens for chunk in chunks), "seconds": round(seconds, 2)})
        print(results[-1], flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "tokenizer": args.tokenizer, "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "unset"),
        "load_average": os.getloadavg()[0], "chunk_tokens": 96, "overlap_tokens": 16, "results": results,
    }, indent=1), encoding="utf-8")
    print("| document | MB | chunks | tokens in chunks | seconds |\n|---|---:|---:|---:|---:|")
    for row in results:
        print(f"| {row['shape']} | {row['bytes'] / 1e6:.1f} | {row['chunks']} | {row['tokens']} | {row['seconds']} |")


def document_size(sections) -> int:
    return sum(len(section.text.encode("utf-8")) for section in sections)


if __name__ == "__main__":
    main()
