"""Tables D.1 (other architectures) and E.1 (replacing the final timesteps instead of the first): diversity of
one prompt (with n and its interval), the group's quality beside it (CLIP score / toy adherence), and seconds per
image for each (pair, method tag), from diversity.csv / ablate.csv, fid.csv and samples.csv."""

from __future__ import annotations

from typing import Any

from ...metrics.labels import metric_label
from .common import (
    Line,
    RunData,
    as_number,
    choose_model,
    diversity_rows,
    match_tag,
    mean_of,
    origin,
    preferred_tags,
    quality_lines,
    quality_of,
    tag_rank,
)


def seconds_per_group(run: RunData) -> dict[tuple[str, str, str], tuple[str, int]]:
    """(model, tag, prompt) -> (mean seconds per image, images), from samples.csv."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for row in run.samples:
        if row.get("seconds"):
            groups.setdefault((row["model"], row.get("tag") or row["method"], row["prompt"]), []).append(row["seconds"])
    return {key: (mean_of(values), len(values)) for key, values in groups.items()}


def _fullest_prompt(rows: list[dict[str, str]], model: str | None, preferred: str, own: str | None = None) -> str:
    """The stand-in's prompt for a one-prompt table: the paper's if measured, else the one with most methods; of
    those, the pair's own `default_prompt` (`own`) if it is one, else the first measured."""
    tags: dict[str, set[str]] = {}
    for row in rows:
        if row["model"] == model:
            tags.setdefault(row["prompt"].lower(), set()).add(row["method"])
    if preferred in tags or not tags:
        return preferred
    most = max(len(methods) for methods in tags.values())
    fullest = [prompt for prompt, methods in tags.items() if len(methods) == most]  # diversity.csv's, then ablate's
    return own if own in fullest else fullest[0]


def default_prompts(run: RunData) -> dict[str, str]:
    """pair -> its `default_prompt`, as the run's generate records give it (lowercase, as tables match prompts)."""
    found = {}
    for record in run.records:
        model = (record.get("config") or {}).get("model") or {}
        if record.get("command") == "generate" and model.get("name") and model.get("default_prompt"):
            found[str(model["name"])] = str(model["default_prompt"]).lower()
    return found


def architecture_records(table: str, run: RunData, cfg: Any) -> list[Line]:
    """diversity.csv + samples.csv seconds -> Table D.1 / E.1 cells, one row per (pair, method tag)."""
    pairs = {str(model): dict(rows) for model, rows in dict(cfg.models).items()}
    metrics = {str(m) for m in cfg.metrics}
    paper_prompt = str(cfg.prompt).lower()
    tags = {tag: tag for rows in pairs.values() for tag in rows}  # ablate's other settings belong to Figure 7
    div = [r for r in diversity_rows(run) if r["metric"] in metrics and match_tag(r["method"], tags)]
    # A run on none of the paper's pairs stands in for the one named by `standin` (E.1: SDXL-DMD2). Each pair
    # counts on one prompt, the table's: the paper's if measured, else the one with the most methods measured.
    paper_models = [r["model"] for r in div if r["model"] in pairs]
    standin = None
    if not paper_models and cfg.get("standin"):
        rows = pairs[str(cfg.standin)]
        standin = choose_model(((r["model"], r["method"]) for r in div if match_tag(r["method"], rows)), None)
    own = default_prompts(run)
    prompt_of = {
        model: paper_prompt if model in pairs else _fullest_prompt(div, model, paper_prompt, own.get(model))
        for model in {r["model"] for r in div}
    }
    if standin is not None and cfg.get("standin_prompt"):
        prompt_of[standin] = str(cfg.standin_prompt).lower()
    div = [r for r in div if r["prompt"].lower() == prompt_of[r["model"]]]
    if cfg.get("standin"):  # a table about one pair (E.1): the other architectures of a shared run are D.1's
        div = [r for r in div if r["model"] in pairs or r["model"] == standin]

    def rows_of(model: str) -> dict[str, str]:
        return pairs.get(model) or (pairs[str(cfg.standin)] if model == standin else {})

    # a paper row several of a pair's tags could fill (hybrid_k1 and a glob's hybrid_k1_bs5) shows one; the others
    # get rows of their own, as tags no row names do
    candidates = [(r["model"], r["method"], rows_of(r["model"])) for r in div]
    shows = preferred_tags(
        ((model, match_tag(tag, rows)), tag, tag_rank(tag, rows) or 0)
        for model, tag, rows in candidates
        if match_tag(tag, rows)
    )

    def label(model: str, tag: str, prompt: str) -> tuple[str, str]:
        method = match_tag(tag, rows_of(model))
        if method and shows.get((model, method)) == tag:
            return method, str(cfg.prompt)
        return f"{model} / {tag}", prompt

    seconds = seconds_per_group(run)
    quality = quality_of(run)
    records = []
    seen = set()
    for row in div:
        method, condition = label(row["model"], row["method"], row["prompt"])
        base = dict(model=row["model"], measured_as=f"{row['model']} / {row['method']} / {row['prompt']}")
        line = Line(
            table,
            method,
            condition,
            "dreamsim_diversity",
            measured_metric=metric_label(row),
            measured=row["value"],
            n=row.get("n", ""),
            ci_low=row.get("ci_low") or "",
            ci_high=row.get("ci_high") or "",
            ci=row.get("ci") or "",
            **base,
            **origin(run, row["_source"]),
        )
        records.append(line)
        key = (row["model"], row["method"], row["prompt"])
        if key in seen:
            continue
        seen.add(key)
        records += quality_lines(run, quality, key, line)  # beside diversity: is the variety on the prompt?
        if key in seconds and seconds[key][0]:
            value, count = seconds[key]
            source = "samples.csv"
        elif as_number(row.get("seconds_per_image")) is not None:
            value, count, source = row["seconds_per_image"], row.get("n", ""), row["_source"]
        else:
            continue
        records.append(
            Line(
                table,
                method,
                condition,
                "seconds_per_image",
                measured_metric="seconds_per_image",
                measured=value,
                n=str(count),
                **base,
                **origin(run, source),
            )
        )
    return records


def build(table: str, runs: list[RunData], paper: list[Line], cfg: Any) -> list[Line]:
    """Table D.1's or E.1's (`table`: "D.1" / "E.1") measured cells, run by run; the paper's cells are not needed."""
    return [line for run in runs for line in architecture_records(table, run, cfg)]
