"""Data strategies: from chunks (and the teacher) to training examples, with provenance."""

from domainkd.data.strategies import STRATEGIES, StrategyContext, StrategyOutput, register_strategy

__all__ = ["STRATEGIES", "StrategyContext", "StrategyOutput", "register_strategy"]
