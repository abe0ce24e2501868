"""Reports: the results table in the terminal; Markdown, self-contained HTML with plots, and JSON on disk."""

from domainkd.reporting.html import write_html_report
from domainkd.reporting.markdown import report, results_table

__all__ = ["report", "results_table", "write_html_report"]
