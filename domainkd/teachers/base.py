"""The teacher interface, its registry, and the store-backed way every stage asks it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from tqdm.auto import tqdm

from domainkd.config import TeacherConfig
from domainkd.teachers.store import AnswerStore, answer_key

Messages = list[dict[str, str]]


class Teacher(Protocol):
    """Anything that turns chat conversations into answers, a batch at a time."""

    identity: str
    """Names the model and backend; part of every answer-store key."""
    batch_size: int

    def settings(self) -> dict[str, Any]:
        """Generation settings that change the answer (part of the store key)."""
        ...

    def load(self) -> None:
        """Get ready to generate (load a model, check an endpoint); called only if work remains."""
        ...

    def generate(self, conversations: list[Messages], max_new_tokens: int | None = None) -> list[str]:
        """Answer each conversation (system/user messages); same order as given.

        ``max_new_tokens`` overrides the configured limit for this call.
        """
        ...


TEACHERS: dict[str, Callable[[TeacherConfig], Teacher]] = {}


def register_teacher(name: str) -> Callable[[Callable[[TeacherConfig], Teacher]], Callable[[TeacherConfig], Teacher]]:
    """Class decorator adding a teacher backend to :data:`TEACHERS` under ``name``."""

    def add(factory: Callable[[TeacherConfig], Teacher]) -> Callable[[TeacherConfig], Teacher]:
        TEACHERS[name] = factory
        return factory

    return add


def known_teachers() -> dict[str, Callable[[TeacherConfig], Teacher]]:
    """The registry with the built-in backends loaded."""
    import domainkd.teachers.hf  # noqa: F401  (registers "hf")

    return TEACHERS


def build_teacher(config: TeacherConfig) -> Teacher:
    """Instantiate the configured teacher backend (cheap: models load on first use)."""
    return known_teachers()[config.backend](config)


def ask(
    teacher: Teacher,
    conversations: list[Messages],
    store: AnswerStore,
    description: str = "teacher",
    max_new_tokens: int | None = None,
) -> list[str]:
    """Answer every conversation, taking stored answers first and storing each new batch at once.

    Requests are generated longest-first so a batch holds prompts of similar length (less
    padding); only missing answers reach the teacher, so a fully stored rerun never loads it.

    Args:
        teacher: the teacher (its identity and settings are part of each store key).
        conversations: chat message lists.
        store: the run's answer store.
        description: progress-bar label.
        max_new_tokens: a tighter limit for short outputs (part of the store key).

    Returns:
        Answers in the order of ``conversations``.
    """
    identity, settings = teacher.identity, teacher.settings()
    if max_new_tokens is not None:
        settings = {**settings, "max_new_tokens": min(max_new_tokens, settings["max_new_tokens"])}
    keys = [answer_key(identity, conversation, settings) for conversation in conversations]
    answers = store.get_many(list(dict.fromkeys(keys)))
    by_key = dict(zip(keys, conversations))
    missing = sorted({key for key in keys if key not in answers}, key=lambda key: -len(json.dumps(by_key[key])))
    if missing:
        teacher.load()  # before the progress bar, so a bad model reference is a clean one-line error
    with tqdm(total=len(missing), desc=description, unit="prompt", disable=not missing) as progress:
        for start in range(0, len(missing), teacher.batch_size):
            batch_keys = missing[start : start + teacher.batch_size]
            outputs = teacher.generate([by_key[key] for key in batch_keys], settings["max_new_tokens"])
            store.put_many(
                [
                    {"key": key, "teacher": identity, "settings": settings, "prompt": by_key[key], "answer": output}
                    for key, output in zip(batch_keys, outputs)
                ]
            )
            answers.update(zip(batch_keys, outputs))
            progress.update(len(batch_keys))
    return [answers[key] for key in keys]
