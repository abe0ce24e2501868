"""Bad input through the CLI as a user meets it: one sentence naming the file and the fix, exit 2, nothing written.

Each case runs `python -m domainkd.cli` as a subprocess (see tests/test_cli.py for the helpers).
"""

import json
import sqlite3

import pytest

from domainkd.paths import RunPaths
from tests.sources.pdf import write_pdf
from tests.test_cli import assert_one_sentence_error, domainkd


def _config(tmp_path, tiny_model, docs, **sections):
    """A config file for ``docs`` with the tiny model as student and teacher, plus ``sections`` (YAML text each)."""
    text = (
        f"run_dir: {tmp_path / 'run'}\nstudent:\n  model: {tiny_model}\n"
        f"teacher:\n  model: {tiny_model}\n  max_new_tokens: 8\n"
    )
    sections.setdefault("data", f"  documents: {docs}\n  strategies: {{refusal: {{max_examples: 2}}}}\n")
    for name, body in sections.items():
        text += f"{name}:\n{body}"
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _eval_config(tmp_path, tiny_model, small_docs, questions):
    return _config(tmp_path, tiny_model, small_docs, eval=f"  questions: {questions}\n  systems: [base_student]\n")


def test_a_latin1_evaluation_file_is_named_with_the_fix(tmp_path, tiny_model, small_docs):
    questions = tmp_path / "eval.jsonl"
    questions.write_bytes('{"question": "Combien coûte le café?", "answer": "2 euros"}\n'.encode("latin-1"))
    result = domainkd("eval", str(_eval_config(tmp_path, tiny_model, small_docs, questions)))
    assert_one_sentence_error(result, "eval.jsonl is not UTF-8 text", "save it as UTF-8")
    assert not (tmp_path / "run" / "eval").exists()


def test_a_numeric_reference_answer_must_be_a_string(tmp_path, tiny_model, small_docs):
    questions = tmp_path / "eval.jsonl"
    questions.write_text('{"question": "How many days of leave?", "answer": 3}\n', encoding="utf-8")
    result = domainkd("eval", str(_eval_config(tmp_path, tiny_model, small_docs, questions)))
    assert_one_sentence_error(result, "eval.jsonl line 1 has an 'answer' of 3, but it must be a string")


def test_two_questions_with_one_id_are_refused(tmp_path, tiny_model, small_docs):
    questions = tmp_path / "eval.jsonl"
    row = {"id": "q1", "question": "How many days of leave?", "answer": "27"}
    questions.write_text(json.dumps(row) + "\n" + json.dumps({**row, "question": "Who issues permits?"}) + "\n")
    result = domainkd("eval", str(_eval_config(tmp_path, tiny_model, small_docs, questions)))
    assert_one_sentence_error(result, "uses the id 'q1' for 2 questions")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["name=[unclosed"], "the value is not valid YAML"),
        (["name=x", "name.sub=1"], "which another --set gave a plain value"),
        (["train.kd.alpha=0.5", "train.kd=none"], "whose keys another --set sets"),
        (["train..epochs=1"], "has an empty key part"),
    ],
)
def test_malformed_set_overrides(tmp_path, tiny_model, small_docs, overrides, fragment):
    arguments = [item for override in overrides for item in ("--set", override)]
    result = domainkd("data", str(_config(tmp_path, tiny_model, small_docs)), *arguments)
    assert_one_sentence_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_a_key_set_twice_in_the_config_is_refused(tmp_path, tiny_model, small_docs):
    path = _config(tmp_path, tiny_model, small_docs, train="  epochs: 1\n  learning_rate: 1.0e-4\n  epochs: 3\n")
    result = domainkd("data", str(path))
    assert_one_sentence_error(result, "sets 'epochs' (line", "twice")
    assert not (tmp_path / "run").exists()


def test_a_damaged_answer_store_is_named_with_the_fix(tmp_path, tiny_model, small_docs):
    path = _config(tmp_path, tiny_model, small_docs)
    assert domainkd("data", str(path)).returncode == 0
    store = RunPaths(tmp_path / "run").answer_store
    with sqlite3.connect(store) as connection:  # a real store, then cut in half as a crash or a full disk would
        connection.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, answer TEXT)")
        connection.executemany("INSERT INTO answers VALUES (?, ?)", [(str(n), "x" * 2000) for n in range(300)])
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    result = domainkd("teach", str(path))
    assert_one_sentence_error(result, "teacher_answers.sqlite is damaged", "move it aside and rerun")
    assert not (tmp_path / "run" / "teach" / "train.jsonl").exists()


def test_a_store_that_is_not_a_database_is_named(tmp_path, tiny_model, small_docs):
    path = _config(tmp_path, tiny_model, small_docs)
    assert domainkd("data", str(path)).returncode == 0
    RunPaths(tmp_path / "run").answer_store.write_bytes(b"not a database " * 100)
    assert_one_sentence_error(domainkd("teach", str(path)), "is damaged (file is not a database)")


def _records_config(tmp_path, tiny_model, small_docs, records):
    return _config(tmp_path, tiny_model, small_docs, data=f"  documents: {small_docs}\n  records: [{records}]\n")


def test_a_csv_cell_over_the_csv_modules_limit_is_read(tmp_path, tiny_model, small_docs):
    records = tmp_path / "r.csv"
    records.write_text("name,notes\nPump 7," + "long note " * 20_000 + "\n", encoding="utf-8")  # 200 KB > 128 KiB
    result = domainkd("data", str(_records_config(tmp_path, tiny_model, small_docs, records)))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"] == 1


def test_a_csv_cell_over_the_cell_limit_is_one_sentence(tmp_path, tiny_model, small_docs):
    records = tmp_path / "r.csv"
    records.write_text('name,notes\nPump 7,"' + "x" * 5_100_000 + '"\n', encoding="utf-8")
    result = domainkd("data", str(_records_config(tmp_path, tiny_model, small_docs, records)))
    assert_one_sentence_error(result, "r.csv line", "is not readable CSV", "at most 5 MB")
    assert not (tmp_path / "run").exists()


def test_a_records_csv_with_a_byte_order_mark_keeps_its_first_column_name(tmp_path, tiny_model, small_docs):
    records = tmp_path / "r.csv"
    records.write_bytes("\ufeffasset,location\nPump 7,Basin B\n".encode("utf-8"))
    result = domainkd("data", str(_records_config(tmp_path, tiny_model, small_docs, records)))
    assert result.returncode == 0, result.stderr
    row = json.loads((tmp_path / "run" / "data" / "records.jsonl").read_text().splitlines()[0])
    assert row["fields"] == {"asset": "Pump 7", "location": "Basin B"}


def test_an_empty_records_file_is_one_sentence(tmp_path, tiny_model, small_docs):
    records = tmp_path / "r.jsonl"
    records.write_bytes(b"")
    result = domainkd("data", str(_records_config(tmp_path, tiny_model, small_docs, records)))
    assert_one_sentence_error(result, "r.jsonl is empty", "add rows or remove it")
    assert not (tmp_path / "run").exists()


def test_a_qa_set_with_repeated_questions_keeps_one_and_says_so(tmp_path, tiny_model, small_docs):
    qa = tmp_path / "qa.csv"
    qa.write_text(
        "question,answer\nWhen does parking open?,06:40\nWhen does parking open?,06:40\n"
        "When does parking open? ,At 7.\nWho issues permits?,Tomas Brenner\n",
        encoding="utf-8",
    )
    path = _config(tmp_path, tiny_model, small_docs, data=f"  documents: {small_docs}\n  qa_sets: [{qa}]\n")
    result = domainkd("data", str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["qa_pairs"] == 2
    assert "qa.csv asks 1 question more than once" in result.stderr and "kept its first answer" in result.stderr


def test_documents_that_cannot_be_used_are_each_named_and_counted(tmp_path, tiny_model, small_docs):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Leave\n\nFull-time staff receive 27 days of annual leave each year.\n")
    (docs / "headings.md").write_text("# Leave\n\n## Parking\n")
    write_pdf(docs / "scan.pdf", [[]])  # a page with no text layer, as a scanned page is
    (docs / "zero.txt").write_bytes(b"")
    result = domainkd("data", str(_config(tmp_path, tiny_model, docs)))
    assert result.returncode == 0, result.stderr
    skipped = json.loads(result.stdout)["skipped_documents"]
    assert skipped == {
        "headings.md": "only headings, no text under them",
        "scan.pdf": "no extractable text (a scanned PDF needs OCR first)",
        "zero.txt": "empty",
    }
    for name in skipped:
        assert name in result.stderr


def test_a_symlink_out_of_the_document_folder_is_skipped_and_named(tmp_path, tiny_model):
    docs, outside = tmp_path / "docs", tmp_path / "outside"
    docs.mkdir()
    outside.mkdir()
    (docs / "good.md").write_text("# Leave\n\nFull-time staff receive 27 days of annual leave each year.\n")
    (outside / "secret.md").write_text("# Secret\n\nroot:x:0:0:root:/root:/bin/bash and other private lines here.\n")
    (outside / "more").mkdir()
    (outside / "more" / "deep.md").write_text("# Deep\n\nAnother private line that must stay out of the chunks.\n")
    (docs / "escape.md").symlink_to(outside / "secret.md")
    (docs / "linked").symlink_to(outside / "more", target_is_directory=True)
    (docs / "alias.md").symlink_to(docs / "good.md")  # inside the folder: read
    result = domainkd("data", str(_config(tmp_path, tiny_model, docs)))
    assert result.returncode == 0, result.stderr
    chunks = (tmp_path / "run" / "data" / "chunks.jsonl").read_text()
    assert "root:x" not in chunks and "private" not in chunks
    skipped = json.loads(result.stdout)["skipped_documents"]
    assert set(skipped) == {"escape.md", "linked"}
    assert "outside" in skipped["escape.md"] and "not followed" in skipped["linked"]
    assert "escape.md" in result.stderr and "linked" in result.stderr
    # the link inside the folder is read; good.md's chunk, the same text, is kept once (under the first name)
    assert {json.loads(line)["document"] for line in chunks.splitlines()} == {"alias.md"}
