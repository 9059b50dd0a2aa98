"""`diversity-cli report`: the paper's tables with the published number beside each measured one, and an HTML
report per run directory.

    diversity-cli report out=results/toy                       # one run directory
    diversity-cli report runs=[results/paper/table3,results/paper/car] tables=[3,D1,E1]

Tables go to `tables_dir` as `table_<id>.md` and `table_<id>.csv` (and all of them in `tables.md`); Figures 5 and
7 as PNG (+ CSV of the plotted points) when the runs hold `commitment.csv` / `ablate.csv`. With `html=true` each
run directory gets a self-contained `report.html` (images embedded): its tables, plots, measurements, and a grid
of sample thumbnails per prompt and method.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, ListConfig
from rich.markup import escape

from ..core.console import stderr_console
from ..core.errors import UserError
from ..core.images import open_rgb
from ..core.marker import left_as_found, refuse_foreign_outputs, write_owned
from ..core.record import LIBRARY, record_invocation
from ..core.resources import data_path, display
from ..core.rundir import RunDir
from .tables import (
    RUN_CSVS,
    STALE,
    TABLE_IDS,
    TABLES_OF,
    RunData,
    Table,
    ablate_curves,
    ablate_notes,
    build_tables,
    column_kind,
    figure5,
    figure7,
    format_number,
    load_run,
    metric_notes,
    provenance,
    read_csv,
    read_paper,
    reading_notes,
    suggested_row,
    table_keys,
    to_markdown,
    untabulated,
    wide,
    write_csv,
)
from .tables.common import QUALITY_METRICS, row_change
from .tables.figures import figure_csv, figure_png
from .tables.render import TABLE_CSV, TABLE_MD, TABLES_MD


def write_report(cfg: DictConfig) -> Path | None:
    roots = run_dirs(cfg)
    runs = [load_run(root) for root in roots]
    empty = [str(run.root) for run in runs if not run.found]
    if len(empty) == len(runs):
        raise UserError(
            f"no results in {', '.join(empty)}: none of {', '.join(RUN_CSVS)} found; "
            f"run generate / diversity / fid / transfer-lora / x0viz / ablate with out=<that directory> first"
        )
    cfg.mapping["3"].prompts = str(data_path(cfg.mapping["3"].prompts))
    paper_path = data_path(cfg.paper)
    paper = read_paper(check_paper(paper_path, str(cfg.paper)))
    keys = table_keys(cfg.tables)
    # inside the run by default: one shared results/tables only when asked for (tables_dir=results/tables)
    tables_dir = Path(cfg.tables_dir) if cfg.tables_dir is not None else roots[0] / "tables"
    tables = build_tables([r for r in runs if r.found], paper, cfg, keys)
    metrics = list(cfg.diversity_metrics)
    drawn = figures_drawn(runs, metrics) if cfg.figures else []
    refuse_other_files(cfg, runs, tables, tables_dir)
    written, figures = [], []
    filled = bool(tables or drawn)  # else tables_dir would hold nothing but this report's record and run.json
    if filled:
        # a table of these runs they no longer hold a measurement for says so in its file (not when nothing else is
        # written: "nothing written" stays true, and the terminal says it is out of date)
        mark_out_of_date(tables_dir, tables, keys, roots)
        with left_as_found(tables_dir):
            written = write_tables(tables, tables_dir, display(paper_path), roots, keys)
            record_invocation(tables_dir, config=cfg, runs=[str(root) for root in roots])
            figures = write_figures(runs, tables_dir, metrics) if cfg.figures else []
    pages = []
    if cfg.html:
        # A run's page is the report of that run: every table it has data for (the make targets report one
        # table at a time into shared run directories), none with tables=none.
        page_keys = table_keys("all") if keys else []
        for one in runs:
            if one.found:
                own = build_tables([one], paper, cfg, page_keys)
                record_invocation(one.root, config=cfg, tables_dir=str(tables_dir) if filled else None)
                pages.append(write_html(one, own, cfg, display(paper_path)))
    _print_summary(keys, tables, written, figures, pages, tables_dir, roots)
    for note in ablate_notes(runs, metrics) if cfg.figures else []:
        if note.startswith(STALE):  # numbers over images that changed: a warning, as the tables' are
            text = plain_text(note.removeprefix(STALE)).strip()
            stderr_console().print(f"[yellow]warning[/]: out of date: {escape(text)}")
        else:
            stderr_console().print(f"note: {escape(note)}")
    if keys:
        _print_untabulated(untabulated([r for r in runs if r.found], cfg.mapping, keys), cfg.mapping, keys)
        _print_unshown_metrics(runs, list(cfg.diversity_metrics), keys)
    if not filled and not pages:  # not an error: the runs hold results, none of them of what was asked for
        stderr_console().print(f"note: {escape(nothing_to_report(cfg, keys, roots))}")
    return tables_dir if filled else None


def check_paper(path: Path, given: str) -> Path:
    """The published numbers' file, or one line saying which of missing, a folder or empty it is (each has its
    own remedy: the path, or the file's content)."""
    shipped = "it ships as data/paper_tables.csv"
    named = f"paper={given}" + (f" ({path})" if str(path) != given else "")  # data/... is the shipped copy
    if not path.exists():
        raise UserError(f"{named}: not found; {shipped}")
    if not path.is_file():
        raise UserError(f"{named}: a folder, not a CSV file; {shipped}")
    if path.stat().st_size == 0:
        raise UserError(f"{named}: the file is empty (0 bytes); {shipped}")
    if not read_csv(path):
        raise UserError(f"{named}: the file has a header but no rows; {shipped}")
    return path


def figures_drawn(runs: list[RunData], metrics: list[str]) -> list[str]:
    """The figures these runs make (as `figure5` / `figure7` decide): Figure 5 from commitment.csv, Figure 7 where
    ablate.csv varies a knob."""
    swept = any(c["knob"] != "baseline" for c in ablate_curves(runs, metrics))
    drawn = {"figure_5": any(run.commitment for run in runs), "figure_7": swept}
    return [name for name, made in drawn.items() if made]


def nothing_to_report(cfg: DictConfig, keys: list[str], roots: list[Path]) -> str:
    """The one line for a report that writes no table, figure or page: no tables_dir is made for it either, so
    this line is all there is to tell why."""
    where = ", ".join(map(str, roots))
    tables = cfg.tables if isinstance(cfg.tables, str) else f"[{','.join(map(str, cfg.tables))}]"
    asked = f"no measurement for tables={tables}" if keys else "tables=none"
    figures = "no figure to draw (no commitment.csv, no ablate.csv sweep)" if cfg.figures else "figures=false"
    return f"nothing to report in {where}: {asked}, {figures} and html=false; nothing written"


def _print_untabulated(found: dict[str, dict[str, str]], mapping: DictConfig, keys: list[str]) -> None:
    """Measured groups whose method tag no table row names: said, so a missing row is not read as unmeasured; with
    a mapping that would show one, when a row of its method can take it."""
    for source, groups in found.items():
        tables = ", ".join(TABLE_IDS[key] for key in TABLES_OF[source])
        example = next(filter(None, (suggested_row(source, group, mapping, keys) for group in groups)), None)
        how = (
            f"a row takes a tag with e.g. {example}, as conf/report.yaml's mapping says"
            if example
            else "no row of theirs is for these methods (conf/report.yaml's mapping)"
        )
        files = " and ".join(dict.fromkeys(groups.values()))  # ablate.csv for an ablation's groups
        stderr_console().print(
            f"note: {files} measured {escape(', '.join(groups))}, in no row of Tables {tables} (their tags are no "
            f"row's); {escape(how)}"
        )


def _print_unshown_metrics(runs: list[RunData], shown: list[str], keys: list[str]) -> None:
    """diversity.csv metrics no table shows (Vendi, precision/recall/density/coverage, metrics outside
    `diversity_metrics`): said, so "no measurement in these runs" is not read as nothing measured."""
    if not any(key in keys for key in TABLES_OF["diversity.csv"]):
        return
    held = dict.fromkeys(row.get("metric", "") for run in runs for row in run.diversity)
    unshown = [metric for metric in held if metric and metric not in (*shown, *QUALITY_METRICS)]
    if unshown:
        stderr_console().print(
            f"note: diversity.csv also holds {escape(', '.join(unshown))}, which no table shows (the tables show "
            f"diversity_metrics={escape(','.join(shown))} beside their quality); diversity.csv has every row"
        )


def refuse_other_files(cfg: DictConfig, runs: list[RunData], tables: dict[str, Table], tables_dir: Path) -> None:
    """Before any file is written: none of those this report writes is a file of yours (a report that stopped at
    report.html had rewritten the tables already)."""
    outputs = {"tables.md": TABLES_MD} if tables else {}
    for key in tables:
        outputs.update({f"table_{key}.md": TABLE_MD, f"table_{key}.csv": TABLE_CSV})
    if cfg.figures:  # the figures this report draws (Figure 7 only where a knob varies, as figure7 decides)
        for name in figures_drawn(runs, list(cfg.diversity_metrics)):
            outputs.update({f"{name}.png": figure_png, f"{name}.csv": figure_csv})
    refuse_foreign_outputs(tables_dir, outputs, "tables_dir=")  # another out= would be another run
    for run in runs if cfg.html else []:
        if run.found:
            refuse_foreign_outputs(run.root, {"report.html": None})


def run_dirs(cfg: DictConfig) -> list[Path]:
    if cfg.out is not None and cfg.runs is not None:
        raise UserError("give either out=<run directory> or runs=[dir1,dir2], not both")
    if cfg.runs is not None:
        items = list(cfg.runs) if isinstance(cfg.runs, (list, ListConfig)) else str(cfg.runs).split(",")
        roots = [Path(str(item).strip()) for item in items if str(item).strip()]
    elif cfg.out is not None:
        roots = [Path(str(cfg.out))]
    else:
        raise UserError("give out=<run directory> (or runs=[dir1,dir2]) to report on")
    if not roots:
        raise UserError("runs= is empty; give runs=[dir1,dir2]")
    for root in roots:
        if not root.is_dir():
            raise UserError(f"{root} is not a directory; out= / runs= name run directories of generate & co.")
    return list(dict.fromkeys(roots))


# ------------------------------------------------------------------------------------------------ outputs


def write_tables(
    tables: dict[str, Table], folder: Path, paper_source: str, roots: list[Path], asked: list[str]
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key, table in tables.items():
        markdown = write_owned(folder, f"table_{key}.md", to_markdown(table, paper_source, folder), TABLE_MD)
        written += [markdown, write_csv(table, folder / f"table_{key}.csv")]
    if tables:
        # tables.md holds every table file of the folder, also those an earlier report (another target) wrote.
        parts = sorted(folder.glob("table_*.md"), key=lambda p: _order(p.stem.removeprefix("table_")))
        combined = "# The paper's tables: published beside measured\n\n" + "\n".join(
            _included(p, tables, asked, roots) for p in parts
        )
        write_owned(folder, "tables.md", combined, TABLES_MD)
    return written


def mark_out_of_date(folder: Path, tables: dict[str, Table], asked: list[str], roots: list[Path]) -> None:
    """A table asked for that these runs, which it was written from, hold no measurement for now (its CSV removed):
    its own file says so under its heading, as tables.md does, not only the terminal; kept, with its date."""
    for key in asked:
        path = folder / f"table_{key}.md"
        if key in tables or not path.is_file() or not from_these_runs(path, roots):
            continue
        text = path.read_text(encoding="utf-8")
        heading, _, rest = text.partition("\n")
        if rest.lstrip("\n").startswith(OUT_OF_DATE):
            continue
        written = path.stat().st_mtime
        write_owned(folder, path.name, f"{heading}\n\n{_stale_note(written)}\n{rest}", TABLE_MD)
        os.utime(path, (written, written))  # its date stays the one its numbers are of


OUT_OF_DATE = "*Out of date:"


def _stale_note(written: float) -> str:
    return (
        f"{OUT_OF_DATE} written {_when(written)} from the runs of this report, which hold no measurement for it now.*"
    )


def _when(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _included(path: Path, tables: dict[str, Table], asked: list[str], roots: list[Path]) -> str:
    """A table file as tables.md holds it: this report's as written; one written from these runs that they hold no
    measurement for now is out of date (marked in its file); one of these runs not asked for (tables=3) was not
    checked again; one an earlier report wrote says so, since its runs were not checked again now (images remade
    since would go unflagged)."""
    key = path.stem.removeprefix("table_")
    text = path.read_text(encoding="utf-8")
    if key in tables:
        return text
    heading, _, rest = text.partition("\n")
    body = rest.lstrip("\n")
    if body.startswith(OUT_OF_DATE):  # its file's mark, from a report that asked for it: said again below if so
        rest = "\n" + body.partition("\n")[2]
    written = path.stat().st_mtime
    ours = from_these_runs(path, roots)
    if ours and key in asked:
        note = _stale_note(written)
    elif ours:
        note = f"*Written {_when(written)} from these runs; not asked for by this report, so not checked again.*"
    else:
        note = (
            f"*As an earlier report wrote it ({_when(written)}); not checked again by this one: rerun that report to "
            "refresh it.*"
        )
    return f"{heading}\n\n{note}\n{rest}"


def from_these_runs(table_md: Path, roots: list[Path]) -> bool:
    """Whether an earlier table's measured cells all came from `roots` (its CSV's `run` column): then it is no other
    report's table kept in a shared folder but these runs' own, measured before. Compared as resolved paths (`runA`
    and `/work/runA` from /work are one run); a relative one written from another folder is not matched by its name
    alone (another run may share it): that table is said to be an earlier report's, never marked."""
    made_from = {row.get("run") for row in read_csv(table_md.with_suffix(".csv"))} - {None, ""}
    return bool(made_from) and {Path(run).resolve() for run in made_from} <= {root.resolve() for root in roots}


def _order(key: str) -> tuple[int, str]:
    order = ["1", "2", "3", "4", "D1", "E1"]
    return (order.index(key), key) if key in order else (len(order), key)


def write_figures(runs: list[RunData], folder: Path, metrics: list[str]) -> list[Path]:
    made = {
        folder / "figure_5.png": figure5(runs, folder / "figure_5.png"),
        folder / "figure_7.png": figure7(runs, folder / "figure_7.png", metrics),
    }
    for path, drawn in made.items():
        if drawn is None and path.is_file():  # not this report's: left as it is, but not to be read as its
            stderr_console().print(f"[yellow]warning[/]: no {path.stem.replace('_', ' ')} from these runs; {path} is "
                                   "an earlier report's")  # fmt: skip
    return [path for path in made.values() if path is not None]


# ----------------------------------------------------------------------------------------------- the HTML


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.label,th.label{text-align:left}
td.paper{background:#f7f7ff}td.measured{background:#f4fff4;font-weight:600}
pre{font-size:11px;background:#f7f7f7;padding:4px;max-height:300px;overflow:auto}
details{margin:8px 0}details.record{margin-left:16px}summary{cursor:pointer}
.meta{color:#555;font-size:13px}.note{color:#555;font-size:12px;margin:2px 0}
figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}figcaption{font-size:12px;color:#555}
.thumbs img{margin:1px;image-rendering:pixelated}
"""


def write_html(run: RunData, tables: dict[str, Table], cfg: DictConfig, paper_source: str) -> Path:
    grid = cfg.grid
    parts = [_header(run), _provenance_html(run)]
    parts.append("<h2>Paper tables</h2>")
    if not tables:
        parts.append("<p class='meta'>This run directory has no measurement that a paper table uses.</p>")
    for table in tables.values():
        parts.append(_table_html(table, paper_source))
    parts.append("<h2>Figures</h2>")
    parts.append(_figures_html(run, cfg, int(grid.figures)))
    parts.append("<h2>Measurements</h2>")
    parts.append(_measurements_html(run, int(grid.rows)))
    parts.append("<h2>Samples</h2>")
    samples = run.samples or point_samples(run.root)  # an ablate run: the images are in its points' runs
    parts.append(_samples_html(run.root, samples, int(grid.prompts), int(grid.per_group), int(grid.thumb)))
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>diversity-cli report: {html.escape(run.root.name)}</title><style>{STYLE}</style></head>"
        f"<body>\n{''.join(parts)}\n</body></html>\n"
    )
    return write_owned(run.root, "report.html", page)  # atomic; never over a report.html of someone else


def _header(run: RunData) -> str:
    # the pairs of its images, and of an x0viz run's commitment (which keeps no samples.csv)
    traced = {row.get("model") or "" for row in run.commitment_summary}
    models = sorted(({row["model"] for row in run.samples} | traced) - {""})
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = {}
    for record in run.versions.values():
        if isinstance(record, dict):
            versions.update({k: v for k, v in record.items() if k in ("diversity_cli", "torch", "diffusers", "device")})
    items = [
        f"run directory: <code>{html.escape(str(run.root))}</code>",
        f"report written {now}",
        f"pairs: {html.escape(', '.join(models) or '-')}; {len(run.samples)} image(s) in samples.csv",
        "results: " + ", ".join(f"{html.escape(n)} ({html.escape(run.date(n))})" for n in run.found),
    ]
    if run.commit:
        items.append(f"git commit: {html.escape(run.commit)}")
    if versions:
        items.append("versions: " + html.escape(", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
    return (
        f"<h1>diversity-cli report: {html.escape(run.root.name)}</h1><ul class='meta'>"
        + "".join(f"<li>{item}</li>" for item in items)
        + "</ul>"
    )


def _table_html(table: Table, paper_source: str) -> str:
    header, body = wide(table)
    kinds = [column_kind(name) for name in header]
    out = [f"<h3>{html.escape(table.title)}</h3>"]
    out.append(f"<p class='note'>Paper: {html.escape(paper_source)} (Table {html.escape(table.id)}).</p>")
    out += [f"<p class='note'>Measured: {html.escape(line)}.</p>" for line in provenance(table)]
    if table.standin:
        out.append(f"<p class='note'><strong>{html.escape(table.standin)}.</strong></p>")
    out.append("<table><tr>")
    for name, kind in zip(header, kinds, strict=True):
        css = " class='label'" if kind is None else ""
        out.append(f"<th{css}>{html.escape(name)}</th>")
    out.append("</tr>")
    for row in body:
        out.append("<tr>")
        for kind, cell in zip(kinds, row, strict=True):
            out.append(f"<td class='{kind or 'label'}'>{html.escape(cell)}</td>")
        out.append("</tr>")
    out.append("</table>")
    notes = metric_notes(table) + table.notes + reading_notes(table)
    out += [f"<p class='note'>{markdown_inline(note)}</p>" for note in notes]
    out.append(
        "<p class='note'>Provenance: <a href='#provenance'>the invocation records</a> of the commands that made these "
        "numbers (command line, config, versions, device, dtype, weights).</p>"
    )
    return "".join(out)


# The inline markdown the notes use: a backslash escape (how a note embeds a prompt or path as it is), `code`,
# **bold**, [text](link).
_ESCAPED = r"\\(?P<escaped>[!-/:-@\[-`{-~])"  # a backslash before ASCII punctuation, as md_literal writes it
_INLINE = re.compile(
    _ESCAPED + r"|`(?P<code>[^`]+)`"
    r"|\*\*(?P<bold>(?:\\.|[^*\\])+)\*\*"
    r"|\[(?P<text>(?:\\.|[^\]\\])+)\]\((?P<link>[^()\s]+)\)"
)


def markdown_inline(text: str) -> str:
    """A note's inline markdown as HTML; everything else, and what it escapes, shown as text (quotes too: no
    attribute can be left)."""
    out, end = [], 0
    for match in _INLINE.finditer(text):
        out += [html.escape(text[end : match.start()]), _inline_html(match)]
        end = match.end()
    return "".join(out) + html.escape(text[end:])


def _inline_html(match: re.Match[str]) -> str:
    if match["escaped"] is not None:
        return html.escape(match["escaped"])
    if match["code"] is not None:
        return f"<code>{html.escape(match['code'])}</code>"
    if match["bold"] is not None:
        return f"<b>{markdown_inline(match['bold'])}</b>"
    label = markdown_inline(match["text"])
    return f"<a href='{html.escape(match['link'])}'>{label}</a>" if _safe_link(match["link"]) else label


def _safe_link(target: str) -> bool:
    """Only web and relative links: a `javascript:` or `data:` target in a note would run in the reader's browser
    (which also drops control characters, so "\\x01javascript:" is one too)."""
    if not target.isprintable():
        return False
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", target)
    return scheme is None or scheme[1].lower() in ("http", "https")


def plain_text(note: str) -> str:
    """A note for the terminal: its backslash escapes dropped (the terminal reads no markdown)."""
    return re.sub(_ESCAPED, r"\g<escaped>", note)


def _provenance_html(run: RunData) -> str:
    """Every invocation record of the run (`runs/*.json`), collapsed: what made each of its results."""
    if not run.records:
        return (
            "<details id='provenance'><summary>Provenance: no invocation records (runs/*.json) in this run "
            "directory; it was made before they were written</summary></details>"
        )
    parts = [
        f"<details id='provenance'><summary>Provenance: {len(run.records)} invocation record(s) in "
        f"<code>{html.escape(str(run.root / 'runs'))}</code></summary>"
    ]
    for record in run.records:
        parts.append(_record_html(record))
    parts.append("</details>")
    return "".join(parts)


def _no_end(record: dict) -> str:
    """What a record without an end says of its command: on this host, whether its process still runs."""
    import platform

    pid, host = record.get("pid"), record.get("host", "?")
    said = "no end recorded"
    if LIBRARY in (record.get("status"), record.get("command")):  # an older version wrote status running there
        return f"{said}: library code called outside the CLI (a notebook, a script) records none"
    if isinstance(pid, int) and host == platform.node():
        try:
            os.kill(pid, 0)  # signal 0: only whether the process exists
        except ProcessLookupError:
            return f"{said}, and its process (pid {pid} on this host) no longer runs: killed outright (kill -9, OOM)"
        except PermissionError:  # it exists, another user's: a pid reused since, or the command itself
            pass
        return f"{said}: its process (pid {pid} on this host) still runs (the command, or a pid reused since)"
    return f"{said}: still running, or killed outright (kill -9, a node lost; pid {pid or '?'} on {host})"


def _record_html(record: dict) -> str:
    import json

    command_line = " ".join(str(part) for part in record.get("command_line", []))
    summary = f"{record.get('command', '?')} at {record.get('started', '?')} ({record.get('_file', '')})"
    facts = [
        ("command line", command_line),
        (
            "ended",
            f"{record['ended']} ({record.get('status')}, exit {record.get('exit_code')})"
            if record.get("ended")
            else _no_end(record),
        ),
        ("git commit", record.get("git_commit")),
        ("source hash", record.get("source")),
        ("host", record.get("host")),
        ("python", record.get("python")),
        ("device", record.get("device")),
        ("dtype", record.get("dtype")),
    ]
    out = [f"<details class='record'><summary>{html.escape(summary)}</summary><table>"]
    out += [
        f"<tr><th class='label'>{html.escape(name)}</th><td class='label'>{html.escape(str(value))}</td></tr>"
        for name, value in facts
        if value not in (None, "")
    ]
    packages = record.get("packages") or {}
    if packages:
        text = ", ".join(f"{name} {version}" for name, version in sorted(packages.items()))
        out.append(f"<tr><th class='label'>packages</th><td class='label'>{html.escape(text)}</td></tr>")
    out.append("</table>")
    models = record.get("models") or {}
    if models:
        out.append("<table><tr><th class='label'>model</th><th class='label'>hub id / path</th>")
        out.append("<th class='label'>revision</th><th class='label'>weights hash</th></tr>")
        for role, item in models.items():
            item = item if isinstance(item, dict) else {"source": item}
            source = item.get("hub_id") or item.get("path") or item.get("source") or ""
            if item.get("subfolder"):
                source += f" / {item['subfolder']}"
            if item.get("file"):
                source += f" / {item['file']}"
            cells = [role, source, item.get("revision") or "", item.get("weights_hash") or ""]
            out.append("<tr>" + "".join(f"<td class='label'>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        out.append("</table>")
    skip = {"command", "command_line", "started", "host", "python", "packages", "git_commit", "executable"}
    skip |= {
        "device",
        "dtype",
        "models",
        "_file",
        "schema",
        "overrides",
        "ended",
        "status",
        "exit_code",
        "source",
        "pid",
    }
    for name, value in record.items():
        if name not in skip:
            text = json.dumps(value, indent=1, sort_keys=True, default=str)
            out.append(f"<p class='note'><b>{html.escape(name)}</b></p><pre>{html.escape(text)}</pre>")
    out.append("</details>")
    return "".join(out)


def _png_data(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figures_html(run: RunData, cfg: DictConfig, limit: int) -> str:
    out, metrics = [], list(cfg.diversity_metrics)
    with tempfile.TemporaryDirectory() as tmp:
        for made, caption in (
            (figure5([run], Path(tmp) / "figure_5.png"), "Figure 5: distance of each step's x̂0 to the final image"),
            (
                figure7([run], Path(tmp) / "figure_7.png", metrics),
                # the notes are markdown, the caption plain text (its ** showed as written)
                " ".join(
                    ["Figure 7: ablations of the hybrid's knobs (ablate.csv)."]
                    + [plain_text(note.replace(STALE, "out of date:")) for note in ablate_notes([run], metrics)]
                ),
            ),
        ):
            if made is not None:
                out.append(_figure(_png_data(made), caption, width=None))
    # Every PNG the commands left in the run directory: x̂0 / x_t grids, commitment curve, transfer grids, ablate plots.
    pictures = sorted(run.root.glob("*.png")) + sorted((run.root / "plots").glob("*.png"))
    for path in pictures[:limit]:
        out.append(_figure(_png_data(path), str(path.relative_to(run.root)), width=None))
    if len(pictures) > limit:
        out.append(f"<p class='note'>{len(pictures) - limit} more PNG(s) in the run directory not shown.</p>")
    return "".join(out) or "<p class='meta'>No figures: no commitment.csv, ablate.csv or PNG in this run.</p>"


def _figure(src: str, caption: str, width: int | None) -> str:
    size = f" width='{width}'" if width else " style='max-width:100%'"
    text = html.escape(caption)
    return f"<figure><img src='{src}'{size} alt='{text}'><figcaption>{text}</figcaption></figure>"


def _measurements_html(run: RunData, limit: int) -> str:
    out = []
    sources = (
        ("diversity.csv", run.diversity),
        ("fid.csv", run.fid),
        ("transfer.csv", run.transfer),
        ("commitment_summary.csv", run.commitment_summary),
        ("ablate.csv", run.ablate),
    )
    for name, rows in sources:
        if not rows:
            continue
        columns = list(rows[0])
        # a row over other images than the run holds now says so, as the tables' cells do
        changes = [row_change(run, name, row) if name in STALE_CHECKED else "" for row in rows]
        marked = any(changes)
        out.append(f"<h3>{html.escape(name)}</h3><table><tr>")
        out += [f"<th>{html.escape(c)}</th>" for c in columns + (["out of date"] if marked else [])]
        out.append("</tr>")
        for row, change in zip(rows[:limit], changes, strict=False):
            cells = [_tidy(row.get(c) or "") for c in columns] + ([change] if marked else [])
            out.append("<tr>" + "".join(f"<td class='label'>{html.escape(c)}</td>" for c in cells) + "</tr>")
        out.append("</table>")
        if len(rows) > limit:
            out.append(f"<p class='note'>first {limit} of {len(rows)} rows; all in {html.escape(name)}</p>")
    return "".join(out) or "<p class='meta'>No measurement CSVs in this run.</p>"


STALE_CHECKED = ("diversity.csv", "fid.csv")  # the measurement files whose rows name their images' count and digest


def _tidy(value: str) -> str:
    # Every non-integer number is rounded alike for reading (not only the long ones); integers (seeds, k, n) and
    # names are shown as the CSV has them.
    return value if value.lstrip("-").isdigit() else format_number(value)


def point_samples(root: Path) -> list[dict[str, str]]:
    """The samples of every point of an ablate run (`points/<model>/<tag>/samples.csv`), paths made relative to
    the ablate run so its report shows each point's images."""
    rows = []
    for csv_path in sorted(root.glob("points/*/*/samples.csv")):
        point = RunDir(csv_path.parent)
        for row in point.read_samples():
            rows.append({**row, "path": str((point.root / row["path"]).relative_to(root))})
    return rows


def _samples_html(root: Path, samples: list[dict[str, str]], prompts: int, per_group: int, thumb: int) -> str:
    """Per prompt, one row of thumbnails per (pair, method tag), seeds in order."""
    groups: dict[str, dict[tuple[str, str], list[dict[str, str]]]] = {}
    for row in samples:
        groups.setdefault(row["prompt"], {}).setdefault((row["model"], row.get("tag") or row["method"]), []).append(row)
    if not groups:
        return "<p class='meta'>No samples.csv in this run.</p>"
    out = []
    shown = list(groups)[:prompts]
    for prompt in shown:
        out.append(f"<h3>{html.escape(prompt)}</h3><table>")
        for (model, tag), rows in groups[prompt].items():
            rows = sorted(rows, key=lambda r: int(r["seed"]) if r["seed"].lstrip("-").isdigit() else 0)[:per_group]
            images = "".join(_thumbnail(root / r["path"], thumb, f"seed {r['seed']}") for r in rows)
            out.append(
                f"<tr><td class='label'>{html.escape(model)}<br><b>{html.escape(tag)}</b></td>"
                f"<td class='label thumbs'>{images}</td></tr>"
            )
        out.append("</table>")
    if len(groups) > len(shown):
        out.append(f"<p class='note'>{len(groups) - len(shown)} more prompt(s) not shown (grid.prompts={prompts}).</p>")
    return "".join(out)


def _thumbnail(path: Path, size: int, title: str) -> str:
    from PIL import Image

    if not path.is_file():
        return f"<span class='note'>[missing {html.escape(path.name)}]</span>"
    image = _readable(path)
    if image is None:
        return f"<span class='note'>[unreadable {html.escape(str(path))}]</span>"
    small = max(image.size) <= size
    if small:  # toy-sized images: scale up with crisp pixels
        factor = max(1, size // max(image.size))
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    else:
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if small:
        image.save(buffer, format="PNG")
        kind = "png"
    else:
        image.save(buffer, format="JPEG", quality=85)
        kind = "jpeg"
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img src='data:image/{kind};base64,{data}' title='{html.escape(title)}' alt='{html.escape(title)}'>"


def _readable(path: Path):
    """The image at `path`, or None with a warning naming it: one damaged sample must not keep the rest of the
    report (tables already written) from its page."""
    try:
        return open_rgb(path)
    except UserError as err:
        stderr_console().print(f"[yellow]warning[/]: {escape(str(err))}; report.html shows it as unreadable")
        return None


def _print_summary(keys, tables, written, figures, pages, tables_dir: Path, roots: list[Path]) -> None:
    from rich.console import Console

    console = Console()
    for key in keys:
        table = tables.get(key)
        earlier = tables_dir / f"table_{key}.md"
        if table is None and earlier.is_file() and from_these_runs(earlier, roots):
            console.print(
                f"table {key}: no measurement in these runs now; {earlier} was written from them before and is out "
                "of date (kept: remove it, or measure again)"
            )
        elif table is None and earlier.is_file():  # a shared tables_dir keeps each table's latest report
            console.print(f"table {key}: no measurement in these runs; {earlier} is an earlier report's, kept")
        elif table is None:
            console.print(f"table {key}: no measurement in these runs (not written){escape(_what_makes(key, roots))}")
        else:
            console.print(f"table {key}: {len(table.measured)} measured cell(s) -> {table_path(written, key)}")
    for path in figures:
        console.print(f"figure: {path}")
    for path in pages:
        console.print(f"html: {path}")
    stale = [note for table in tables.values() for note in table.notes if note.startswith(STALE)]
    for note in dict.fromkeys(stale):  # also in the tables' notes; said here so it is not missed
        stderr_console().print(
            f"[yellow]warning[/]: out of date: {escape(plain_text(note.removeprefix(STALE)).strip())}"
        )


def _what_makes(key: str, roots: list[Path]) -> str:
    """Where a run holds images but not the file a table reads (diversity.csv, fid.csv): that file and the command
    that measures them (the report said "no measurement" alone). Table 1's transfer-lora makes its own images."""
    source = next((name for name, keys in TABLES_OF.items() if key in keys), None)
    if source is None:
        return ""
    bare = [root for root in roots if RunDir(root).samples_files() and not (root / source).is_file()]
    if not bare:
        return ""
    command = source.removesuffix(".csv")
    return f"; {bare[0]} has images and no {source}: `diversity-cli {command} out={bare[0]}` measures them"


def table_path(written: list[Path], key: str) -> str:
    return next((str(p) for p in written if p.name == f"table_{key}.md"), "")
