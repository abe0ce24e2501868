"""SQLite store of teacher answers, keyed by (teacher, prompt, generation settings).

Every answer is committed as soon as its batch finishes, so a job killed at any point
loses at most the batch in flight, and a rerun never asks the teacher the same thing twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

from domainkd.errors import DomainKDError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    teacher TEXT NOT NULL,
    settings TEXT NOT NULL,
    prompt TEXT NOT NULL,
    answer TEXT,
    error TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created REAL NOT NULL
)
"""


def failure_kind(error: str) -> str:
    """The kind of a failure reason, the text before its first colon: "HTTP 500: upstream down" -> "HTTP 500"."""
    return error.split(":", 1)[0].strip() or "unknown"


def answer_key(teacher: str, prompt: Any, settings: dict[str, Any]) -> str:
    """Stable key of one request: sha256 over canonical JSON of its three parts."""
    canonical = json.dumps([teacher, prompt, settings], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class AnswerStore:
    """Persistent map from request key to the teacher's answer (or the reason it failed)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection = sqlite3.connect(path)
        try:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(_SCHEMA)
            self._connection.commit()
            problem = self._connection.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as error:
            problem = str(error)
        if problem != "ok":
            self._connection.close()
            raise DomainKDError(
                f"answer store {path} is damaged ({problem}); move it aside and rerun (the teacher is asked again "
                "for what it held), or restore it from a copy."
            )

    def get_many(self, keys: list[str]) -> dict[str, str]:
        """Answers already stored for ``keys`` (failed requests are not returned)."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._connection.execute(
                f"SELECT key, answer FROM answers WHERE answer IS NOT NULL AND key IN ({marks})", chunk
            )
            found.update(rows)
        return found

    def put_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace answers in one transaction.

        Each row has ``key, teacher, settings, prompt`` and either ``answer`` or ``error``,
        plus optional token counts.
        """
        now = time.time()
        with self._connection:
            self._connection.executemany(
                "INSERT OR REPLACE INTO answers VALUES "
                "(:key, :teacher, :settings, :prompt, :answer, :error, :prompt_tokens, :completion_tokens, :created)",
                [
                    {
                        "answer": None,
                        "error": None,
                        "prompt_tokens": None,
                        "completion_tokens": None,
                        **row,
                        "settings": json.dumps(row["settings"], sort_keys=True),
                        "prompt": json.dumps(row["prompt"], ensure_ascii=False),
                        "created": now,
                    }
                    for row in rows
                ],
            )

    def count(self) -> int:
        """Number of stored answers (successful ones)."""
        return self._connection.execute("SELECT COUNT(*) FROM answers WHERE answer IS NOT NULL").fetchone()[0]

    def stats(self, teacher: str | None = None) -> dict[str, Any]:
        """Totals over every stored request of ``teacher`` (an identity such as ``hf:NAME``; None: every
        teacher's), for a stage's summary: a store copied from another run may hold other teachers' answers.

        Returns:
            ``answered`` and ``failed`` request counts, ``failed_by_reason`` (failures per
            reason kind such as ``"timeout"``, ``"HTTP 500"`` or ``"malformed JSON"``, most
            frequent first), and the ``prompt_tokens`` and ``completion_tokens`` of all stored
            requests, failed ones included (their tokens were spent too).
        """
        of_teacher, arguments = ("teacher = ?", (teacher,)) if teacher is not None else ("1", ())
        answered, failed, prompt_tokens, completion_tokens = self._connection.execute(
            "SELECT COUNT(answer), COUNT(*) - COUNT(answer), COALESCE(SUM(prompt_tokens), 0), "
            f"COALESCE(SUM(completion_tokens), 0) FROM answers WHERE {of_teacher}", arguments
        ).fetchone()
        errors = self._connection.execute(f"SELECT error FROM answers WHERE answer IS NULL AND {of_teacher}", arguments)
        reasons = Counter(failure_kind(error or "") for (error,) in errors)
        return {
            "answered": answered,
            "failed": failed,
            "failed_by_reason": dict(reasons.most_common()),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
        }

    def close(self) -> None:
        """Close the database connection."""
        self._connection.close()

    def __enter__(self) -> AnswerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
