"""The HTML page both reports are: their Markdown summary rendered as HTML, and styles
and plotly settings that keep every figure and table inside the page's width."""

from __future__ import annotations

import html
import re
from typing import Any

_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;line-height:1.4}"
    "table{border-collapse:collapse;margin:.5em 0 1em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".table{overflow-x:auto}"
    "code{background:#f3f3f3;padding:0 .2em;overflow-wrap:anywhere}"
    "img,.plotly-graph-div{max-width:100%}img{height:auto}"
)
_SEPARATOR = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?$")
_NUMBER = re.compile(r"^[-+]?\d[\d.,]*(e[-+]?\d+)?( ± [\d.]+)?%?$")


def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def _cells(row: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", row.strip().removeprefix("|").removesuffix("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def _table(rows: list[str]) -> str:
    """A pipe table: the first row is the header; numbers align right."""
    head, body = _cells(rows[0]), [_cells(r) for r in rows[1:] if not _SEPARATOR.match(r)]
    header = "".join(f"<th>{_inline(c)}</th>" for c in head)
    lines = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if _NUMBER.match(c) else ''}>{_inline(c)}</td>" for c in cells)
        + "</tr>"
        for cells in body
    )
    return f'<div class="table"><table><thead><tr>{header}</tr></thead><tbody>{lines}</tbody></table></div>'


def _kind(line: str) -> str:
    return "table" if line.startswith("|") else "list" if line.startswith("- ") else "p"


def markdown_html(text: str) -> str:
    """The Markdown the reports write, as HTML: ``#`` headings, paragraphs, ``- `` lists,
    pipe tables and `code` spans. Anything else is kept as escaped paragraph text."""
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"(#{1,6}) +(.*)", line)
        if not line.strip():
            i += 1
            continue
        if heading:
            level = len(heading[1])
            blocks.append(f"<h{level}>{_inline(heading[2])}</h{level}>")
            i += 1
            continue
        # A block runs while its lines look alike: table rows, list items or plain text.
        kind, start = _kind(line), i
        while i < len(lines) and lines[i].strip() and not lines[i].startswith("#"):
            if _kind(lines[i]) != kind:
                break
            i += 1
        block = lines[start:i]
        if kind == "table":
            blocks.append(_table(block))
        elif kind == "list":
            items = "".join(f"<li>{_inline(item[2:])}</li>" for item in block)
            blocks.append(f"<ul>{items}</ul>")
        else:
            blocks.append(f"<p>{_inline(' '.join(block))}</p>")
    return "\n".join(blocks)


def figure_html(figure: Any, include_plotlyjs: bool) -> str:
    """A plotly figure as a ``<div>`` that takes the page's width and follows it when the
    window is resized (Optuna sizes some plots, the slice plot among them, in pixels)."""
    import plotly.io as pio

    # The section's heading says what the plot is: Optuna's own title ("Slice Plot")
    # would only repeat it.
    figure.update_layout(autosize=True, width=None, title_text=None)
    div: str = pio.to_html(
        figure,
        full_html=False,
        # plotly.js goes inline once, so the page opens from disk with no server or network.
        include_plotlyjs="inline" if include_plotlyjs else False,
        config={"responsive": True},
        default_width="100%",
    )
    return div


def page(title: str, body: str) -> str:
    """A complete HTML document around ``body``."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


__all__ = ["figure_html", "markdown_html", "page"]
