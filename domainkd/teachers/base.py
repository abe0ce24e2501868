"""The teacher interface, its registry, and the store-backed way every stage asks it."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

from tqdm.auto import tqdm

from domainkd.config import TeacherConfig
from domainkd.errors import DomainKDError
from domainkd.teachers.json_output import parse_json_object
from domainkd.teachers.store import AnswerStore, answer_key, failure_kind

Messages = list[dict[str, str]]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """The teacher's outcome for one conversation: its answer, or the reason there is none."""

    text: str | None
    """The answer; None when the request failed."""
    error: str | None = None
    """Why the request failed, "kind: detail" (e.g. "HTTP 500: ..."); None when answered."""
    prompt_tokens: int | None = None
    """Tokens of the rendered prompt, when the backend knows them."""
    completion_tokens: int | None = None
    """Tokens the teacher wrote, when the backend knows them."""

    def __post_init__(self) -> None:
        if (self.text is None) == (self.error is None):
            raise ValueError("a Reply holds either an answer text or an error, exactly one of them")


class Teacher(Protocol):
    """Anything that turns chat conversations into answers, a batch at a time."""

    identity: str
    """Names the model and backend; part of every answer-store key."""
    batch_size: int
    """Conversations per :meth:`generate` call; each batch is committed to the store when it returns.

    A backend may also offer ``generate_stream(conversations, max_new_tokens, expect_json)``
    yielding ``(index, reply)`` as each answer ends (the local ``hf`` teacher does: continuous
    batching of ``batch_size`` sequences); :func:`ask` then gets every missing conversation at
    once and stores each reply as it comes."""

    def settings(self) -> dict[str, Any]:
        """Generation settings that change the answer (part of the store key)."""
        ...

    def load(self) -> None:
        """Get ready to generate (load a model, check an endpoint); called only if work remains.

        Raises:
            DomainKDError: the model or endpoint cannot be used (one sentence naming the fix).
        """
        ...

    def generate(
        self, conversations: list[Messages], max_new_tokens: int | None = None, expect_json: bool = False
    ) -> list[Reply]:
        """Answer each conversation (system/user messages); one reply each, same order as given.

        A request that fails after the backend's own retries comes back as a failed
        :class:`Reply` instead of raising. ``max_new_tokens`` overrides the configured limit for
        this call; ``expect_json`` lets a backend constrain its output to a JSON object.
        """
        ...


TEACHERS: dict[str, Callable[[TeacherConfig], Teacher]] = {}


def register_teacher(name: str) -> Callable[[Callable[[TeacherConfig], Teacher]], Callable[[TeacherConfig], Teacher]]:
    """Class decorator adding a teacher backend to :data:`TEACHERS` under ``name``."""

    def add(factory: Callable[[TeacherConfig], Teacher]) -> Callable[[TeacherConfig], Teacher]:
        TEACHERS[name] = factory
        return factory

    return add


def generation_settings(config: TeacherConfig) -> dict[str, Any]:
    """The generation settings that decide a teacher's answer (part of every answer-store key)."""
    settings: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "temperature": config.temperature}
    if config.temperature > 0:
        settings.update(top_p=config.top_p, seed=config.seed)
    return settings


def known_teachers() -> dict[str, Callable[[TeacherConfig], Teacher]]:
    """The registry with the built-in backends loaded."""
    import domainkd.teachers.hf  # noqa: F401  (registers "hf")
    import domainkd.teachers.http  # noqa: F401  (registers "openai")
    import domainkd.teachers.vllm  # noqa: F401  (registers "vllm")

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
    expect_json: bool = False,
    max_failed_share: float | None = None,
) -> list[str]:
    """Answer every conversation, taking stored answers first and storing new answers as they come.

    Requests are generated longest-first so a batch holds prompts of similar length (less
    padding); only missing answers reach the teacher, so a fully stored rerun never loads it.
    A request that fails is stored with its reason and answered here as ``""``; the next call
    asks it again (answered requests never are).

    Args:
        teacher: the teacher (its identity and settings are part of each store key).
        conversations: chat message lists.
        store: the run's answer store.
        description: progress-bar label.
        max_new_tokens: a tighter limit for short outputs (part of the store key).
        expect_json: each answer must hold a JSON object: it is repaired and stored as canonical
            JSON (see :func:`parse_json_object`), or stored as failed ``malformed JSON: ...``
            (part of the store key).
        max_failed_share: stop when more than this share of the new requests failed (None: never stop).

    Returns:
        Answers in the order of ``conversations``; ``""`` where the request failed.

    Raises:
        DomainKDError: more than ``max_failed_share`` of the requests failed (every answer is stored first).
    """
    identity, settings = teacher.identity, _request_settings(teacher, max_new_tokens, expect_json)
    keys = [answer_key(identity, conversation, settings) for conversation in conversations]
    answers = store.get_many(list(dict.fromkeys(keys)))
    by_key = dict(zip(keys, conversations))
    missing = sorted({key for key in keys if key not in answers}, key=lambda key: -len(json.dumps(by_key[key])))
    if missing:
        teacher.load()  # before the progress bar, so a bad model reference is a clean one-line error
    failures: Counter[str] = Counter()
    limit = settings["max_new_tokens"]
    with tqdm(total=len(missing), desc=description, unit="prompt", disable=not missing) as progress:
        for group in _replies(teacher, missing, by_key, limit, expect_json):
            store.put_many([_row(key, identity, settings, by_key[key], reply) for key, reply in group])
            answers.update((key, reply.text or "") for key, reply in group)
            failures.update(failure_kind(reply.error) for _, reply in group if reply.error is not None)
            progress.update(len(group))
    unanswered = [key for key in missing if key not in answers]
    if unanswered:
        raise RuntimeError(f"teacher {teacher.identity} left {len(unanswered)} of {len(missing)} conversations unanswered")
    _check_failures(teacher, description, failures, len(missing), max_failed_share)
    _warn_failures(description, failures, len(missing))
    return [answers[key] for key in keys]


def _request_settings(teacher: Teacher, max_new_tokens: int | None, expect_json: bool) -> dict[str, Any]:
    """The teacher's settings with this call's tighter token limit and JSON expectation (store-key parts)."""
    settings = teacher.settings()
    if max_new_tokens is not None:
        settings = {**settings, "max_new_tokens": min(max_new_tokens, settings["max_new_tokens"])}
    if expect_json:  # only when set, so keys of plain-text answers stay as they were
        settings = {**settings, "expect_json": True}
    return settings


def _replies(
    teacher: Teacher, keys: list[str], by_key: dict[str, Messages], max_new_tokens: int, expect_json: bool
) -> Iterator[list[tuple[str, Reply]]]:
    """(key, reply) groups ready to store: each reply as it ends from a streaming teacher, else each batch."""
    stream = getattr(teacher, "generate_stream", None)
    if stream is not None:
        for index, reply in stream([by_key[key] for key in keys], max_new_tokens, expect_json=expect_json):
            yield [(keys[index], _as_json(reply) if expect_json else reply)]
        return
    for start in range(0, len(keys), teacher.batch_size):
        batch = keys[start : start + teacher.batch_size]
        yield list(zip(batch, _generate(teacher, [by_key[key] for key in batch], max_new_tokens, expect_json)))


def _generate(teacher: Teacher, conversations: list[Messages], max_new_tokens: int, expect_json: bool) -> list[Reply]:
    """The teacher's replies to one batch, each checked for a JSON object when one is expected."""
    replies = teacher.generate(conversations, max_new_tokens, expect_json=expect_json)
    if len(replies) != len(conversations):
        raise RuntimeError(
            f"teacher {teacher.identity} gave {len(replies)} replies to {len(conversations)} conversations"
        )
    return [_as_json(reply) for reply in replies] if expect_json else list(replies)


def _as_json(reply: Reply) -> Reply:
    """A successful reply as canonical JSON text, or failed ``malformed JSON: ...`` when unrepairable."""
    if reply.text is None:
        return reply
    parsed, reason = parse_json_object(reply.text)
    if parsed is None:
        return replace(reply, text=None, error=f"malformed JSON: {reason}")
    return replace(reply, text=json.dumps(parsed, ensure_ascii=False))


def _row(key: str, identity: str, settings: dict[str, Any], prompt: Messages, reply: Reply) -> dict[str, Any]:
    """The answer-store row of one reply."""
    return {
        "key": key,
        "teacher": identity,
        "settings": settings,
        "prompt": prompt,
        "answer": reply.text,
        "error": reply.error,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
    }


def _check_failures(teacher: Teacher, description: str, failures: Counter[str], asked: int, max_share: float | None) -> None:
    """Stop when too many requests failed: a run must not go on with a teacher that answers nothing."""
    failed = sum(failures.values())
    if max_share is None or not failed or failed <= max_share * asked:
        return
    kinds = ", ".join(f"{count} {kind}" for kind, count in failures.most_common())
    raise DomainKDError(
        f"{description}: {failed} of {asked} requests to teacher {teacher.identity} failed ({kinds}), more than "
        f"teacher.max_failed_share ({max_share:.0%}); fix the teacher (its server's log says why) and rerun, "
        "the answers so far are kept, or raise teacher.max_failed_share to go on with fewer answers."
    )


def _warn_failures(description: str, failures: Counter[str], asked: int) -> None:
    """One log line when some requests failed, so a run that goes on says so."""
    if failures:
        kinds = ", ".join(f"{count} {kind}" for kind, count in failures.most_common())
        logger.warning(
            "%s: %d of %d requests failed (%s); they are stored as failed and asked again on the next run",
            description, sum(failures.values()), asked, kinds,
        )
