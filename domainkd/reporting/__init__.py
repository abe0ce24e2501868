"""Reports: the results table in the terminal and as Markdown in the run directory."""

from domainkd.reporting.markdown import report, results_table

__all__ = ["report", "results_table"]
