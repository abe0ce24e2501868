"""domainkd: turn a small LLM into a domain specialist with a larger teacher, and measure it.

Pipeline: sources → data → teachers → train → evaluate → report. Each stage is one function
taking a :class:`RunConfig`; the CLI only parses arguments and calls them.
"""

from domainkd.config import RunConfig, load_config
from domainkd.data.build import prepare_data, teach
from domainkd.errors import DomainKDError
from domainkd.evaluation import evaluate
from domainkd.grid import run_grid
from domainkd.pipeline import run
from domainkd.reporting import report
from domainkd.training import train

__all__ = [
    "DomainKDError",
    "RunConfig",
    "evaluate",
    "load_config",
    "prepare_data",
    "report",
    "run",
    "run_grid",
    "teach",
    "train",
]
__version__ = "0.1.0"
