"""Prompts, tags and paths in the report are text, never markup: a prompt full of HTML and markdown is shown as
it is in report.html, in table_3.md and in the notes that name it (an out-of-date note), and no link of a note
leads anywhere but the web or a relative path."""

from __future__ import annotations

import csv
from html.parser import HTMLParser
from pathlib import Path

from markdown_it import MarkdownIt  # rich's markdown parser: how a markdown viewer reads table_3.md

from diversity_cli.core.rundir import SAMPLE_COLUMNS

ODD = "a \"red\" <b>circle</b> & 'x' **bold** `code` [link](javascript:alert(1)) [web](http://e.org) _x_ a|b &amp;"


def _write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), restval="")
        writer.writeheader()
        writer.writerows(rows)


def _odd_run(root: Path) -> Path:
    """Base and distilled on the odd prompt, 4 images each, diversity.csv measured over 3 of base's: out of date."""
    from PIL import Image

    rows = []
    for tag in ("base", "distilled"):
        for seed in range(4):
            path = f"toy/{tag}/odd/{seed:06d}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (40 * seed, 90, 200)).save(root / path)
            rows.append(
                {"method": tag, "model": "toy", "prompt": ODD, "seed": seed, "k": 1, "steps": "4", "nfe": "4",
                 "seconds": 0.1, "path": path, "base_guidance": 0.0, "base_steps": "", "tag": tag, "settings": "x"}
            )  # fmt: skip
    with (root / "samples.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SAMPLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    _write(
        root / "diversity.csv",
        [{"method": tag, "model": "toy", "prompt": ODD, "n": n, "metric": "toy_features", "value": "0.3"}
         for tag, n in (("base", 3), ("distilled", 4))],
    )  # fmt: skip
    return root


class _Page(HTMLParser):
    """The text of every note paragraph, and every tag and link target of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []
        self.tags: list[str] = []
        self.links: list[str] = []
        self._in_note = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value or "" for name, value in attrs if name == "href"]
        if tag == "p" and ("class", "note") in attrs:
            self._in_note = True
            self.notes.append("")

    def handle_endtag(self, tag):
        self._in_note = self._in_note and tag != "p"

    def handle_data(self, data):
        if self._in_note:
            self.notes[-1] += data


def test_a_prompt_is_shown_as_it_is_in_the_html_and_in_the_markdown(cli, tmp_path: Path):
    root = _odd_run(tmp_path / "odd")
    code, _, err = cli("report", f"out={root}", "tables=[3]", "figures=false")
    assert code == 0, err
    page = _Page()
    page.feed((root / "report.html").read_text())
    stale = [note for note in page.notes if note.startswith("out of date")]  # under Table 3 and E.1
    # the prompt's own characters, none read as markup (a tag's or a link's would be gone from the text)
    assert stale and all(ODD in note for note in stale)
    assert all(link.startswith(("http", "/", "#")) for link in page.links), page.links
    assert not [link for link in page.links if "javascript" in link or "e.org" in link]
    markdown = (root / "tables" / "table_3.md").read_text()
    rendered = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)
    seen = _Page()
    seen.feed(rendered.replace("<li>", "<p class='note'>").replace("</li>", "</p>"))
    assert any(ODD in note for note in seen.notes if note.startswith("out of date"))  # the note, as a viewer shows it
    assert "javascript" not in "".join(seen.links) and "e.org" not in "".join(seen.links)
    assert "<b>circle" not in rendered and "<strong>bold" not in rendered and "<code>code" not in rendered
    assert f"<td>{ODD.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}" in rendered.replace(
        "&quot;", '"'
    )  # the prompt's row label
    assert ODD in " ".join(err.split())  # the terminal's warning: the prompt, no markdown escapes


def test_only_web_and_relative_links_are_links_and_quotes_stay_in_their_attribute():
    from diversity_cli.reporting.report import markdown_inline

    html = markdown_inline("[a](javascript:alert) [b](/tmp/r/runs/) [c](https://e.org/x'onmouseover='y) [d](data:x)")
    assert "javascript" not in html and "data:" not in html
    assert "<a href='/tmp/r/runs/'>b</a>" in html
    assert "href='https://e.org/x&#x27;onmouseover=&#x27;y'" in html
