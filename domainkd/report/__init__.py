"""Reports: the results table in the terminal and as Markdown in the run directory."""

from domainkd.report.markdown import report, results_table

__all__ = ["report", "results_table"]
