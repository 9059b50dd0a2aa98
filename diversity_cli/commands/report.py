"""`diversity-cli report`: the paper's tables, measured beside published, and an HTML report per run directory."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def run(cfg: DictConfig) -> Path | None:
    from ..reporting.report import write_report  # pandas, matplotlib: once the command line has been read

    # None: no table or figure went to tables_dir (report.html pages only), so no tables_dir was made
    return write_report(cfg)
