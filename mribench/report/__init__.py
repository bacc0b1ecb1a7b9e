"""The report of a results folder: HTML page, Markdown and figures (``bench report``)."""

from mribench.report.build import build_report

__all__ = ["build_report"]
