"""Records -> reports: tables (Markdown, CSV, LaTeX, HTML), plots and sweep status, from record.json only.

    frame = load_records("outputs/sweeps/2025-01-01_12-00-00")    # one flat row per record
    summary = summarize(frame, ["method", "dataset"], "primary")   # one row per group, seeds aggregated
    write_report(frame, "reports/")     # one row per config: report.{md,csv,tex,html}, *.png

Modules: `load` (records -> frame, column names, chance), `grouping` (the config keys that tell runs
apart), `tables` (grouping and flags), `selection` (the setting chosen on dev), `plots` (scaling
curves, heatmaps), `formats` and `html` (md/tex, the self-contained page), `output` (files and
console), `cli` (`prompt-bench-report`).
"""

from prompt_bench.report.cli import main
from prompt_bench.report.load import chance_level, iter_records, load_records
from prompt_bench.report.output import Report, write_report
from prompt_bench.report.tables import DEFAULT_GROUP_BY, summarize

__all__ = [
    "DEFAULT_GROUP_BY",
    "Report",
    "chance_level",
    "iter_records",
    "load_records",
    "main",
    "summarize",
    "write_report",
]
