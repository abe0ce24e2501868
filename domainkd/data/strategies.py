"""Data-strategy registry: each strategy turns chunks (and the teacher) into training examples.

A strategy is a class with a pydantic ``Params`` model and two methods:
``plan(sources, params)`` (what it would make and cost, for dry runs) and ``build(context, params)``.
Register one with :func:`register_strategy`; configs name it under ``data.strategies``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from domainkd.config import DomainConfig
from domainkd.sources import Chunk, Sources

AskTeacher = Callable[..., list[str]]
"""(conversations, progress label, max_new_tokens=None, expect_json=False) -> answers, through the run's
answer store; a request that failed comes back as "" (its reason is in the store)."""


@dataclass
class StrategyContext:
    """What a strategy may use: the knowledge sources, the teacher, and run-wide settings."""

    sources: Sources
    ask: AskTeacher
    refusal_text: str
    held_out_questions: set[str] = field(default_factory=set)
    """Normalised evaluation questions, never to be used for training (contamination)."""
    domain: DomainConfig = field(default_factory=DomainConfig)
    """What the documents are and who asks about them (the config's ``domain``), for the teacher's prompts."""

    @property
    def chunks(self) -> list[Chunk]:
        return self.sources.chunks


@dataclass
class StrategyOutput:
    """Accepted training examples and rejected candidates (each with a ``reason``)."""

    examples: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """What a strategy would do with the sources, before any teacher call."""

    teacher_calls: int
    """Most teacher requests ``build`` makes (stored answers are not asked again)."""
    examples: int
    """Most training examples it can produce (filters drop some)."""
    what: str
    """One line saying what the examples are."""


class Strategy(Protocol):
    Params: type[BaseModel]

    def plan(self, sources: Sources, params: BaseModel) -> Plan:
        """What ``build`` would make and cost (shown by ``domainkd data --dry-run``)."""
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
    import importlib

    for module in ("context_qa", "refusal", "general", "unstructured", "structured", "qa_set", "rebase"):
        importlib.import_module(f"domainkd.data.{module}")


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
