"""Data-strategy registry: each strategy turns chunks (and the teacher) into training examples.

A strategy is a class with a pydantic ``Params`` model and two methods:
``teacher_calls(chunks, params)`` (for dry runs) and ``build(context, params)``.
Register one with :func:`register_strategy`; configs name it under ``data.strategies``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from domainkd.sources import Chunk
from domainkd.teachers.base import Messages

AskTeacher = Callable[..., list[str]]
"""(conversations, progress label, max_new_tokens=None) -> answers, through the run's answer store."""


@dataclass
class StrategyContext:
    """What a strategy may use: the chunks, the teacher, and run-wide settings."""

    chunks: list[Chunk]
    ask: AskTeacher
    refusal_text: str
    held_out_questions: set[str] = field(default_factory=set)
    """Normalised evaluation questions, never to be used for training (contamination)."""


@dataclass
class StrategyOutput:
    """Accepted training examples and rejected candidates (each with a ``reason``)."""

    examples: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


class Strategy(Protocol):
    Params: type[BaseModel]

    def teacher_calls(self, chunks: list[Chunk], params: BaseModel) -> int:
        """Upper bound on teacher requests ``build`` makes (shown by dry runs)."""
        ...

    def build(self, context: StrategyContext, params: BaseModel) -> StrategyOutput:
        """Make the examples."""
        ...


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str) -> Callable[[type], type]:
    """Class decorator adding a strategy (instantiated once) to :data:`STRATEGIES`."""

    def add(cls: type) -> type:
        STRATEGIES[name] = cls()
        return cls

    return add


def _load_builtin() -> None:
    import domainkd.data.context_qa  # noqa: F401
    import domainkd.data.refusal  # noqa: F401


def validate_strategy_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the strategy's ``Params``; return them with defaults filled in."""
    _load_builtin()
    if name not in STRATEGIES:
        raise ValueError(f"unknown data strategy {name!r}; choose from {', '.join(sorted(STRATEGIES))}")
    try:
        return STRATEGIES[name].Params.model_validate(params).model_dump(mode="json")
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            raise ValueError(f"strategy {name!r} has no parameter {key!r}") from None
        raise ValueError(f"strategy {name!r} parameter {key!r}: {first['msg']}") from None


def strategy_params(name: str, params: dict[str, Any]) -> BaseModel:
    """The typed ``Params`` object of a strategy."""
    _load_builtin()
    return STRATEGIES[name].Params.model_validate(params)
