"""The study's report: one self-contained ``report.html`` and a ``results.json``.

See :func:`write_report`.  Built with the standard library only (``html.escape``,
base64 data URIs, inline CSS): the page loads nothing from the network.
"""

from __future__ import annotations

from .jsonsafe import to_jsonable
from .writer import REPORT_NAME, RESULTS_NAME, write_report

__all__ = ["write_report", "to_jsonable", "REPORT_NAME", "RESULTS_NAME"]
