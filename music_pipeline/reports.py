"""Reports for a browser: every Markdown report as HTML, and one ``reports/index.html``.

The model assets write Markdown (``<data>/reports/*.md``), which a browser shows as raw text.
``write_reports`` renders each as ``<name>.html`` beside it (CommonMark + tables, markdown-it-py;
raw HTML inside the Markdown is escaped, links and images are kept) and writes
``reports/index.html``: what the library holds (``summary.collect``), links to every report, the
interactive maps and any other HTML page in ``reports/``, and every plot under ``<data>/plots/``
as a thumbnail. Pages are self-contained (inline CSS, no scripts, nothing from the network).
``music-pipeline build``/``demo`` call it at the end; in the Dagster UI the ``reports_index``
sensor calls it after every successful run. Nothing here imports Dagster.
"""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime

from music_pipeline.artifacts import ArtifactPath, list_names, write_text
from music_pipeline.layout import DataLayout

INDEX = "index.html"
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1b1b1b;line-height:1.45}
h1,h2,h3{line-height:1.2}table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f2f2f2}
td:not(:first-child){font-variant-numeric:tabular-nums}code{background:#f4f4f4;padding:0 .2em}
pre{background:#f4f4f4;padding:.8em;overflow-x:auto}img{max-width:100%}nav a{margin-right:1em}
.gallery{display:flex;flex-wrap:wrap;gap:1em}.gallery figure{margin:0;width:250px}
.gallery img{width:250px;height:170px;object-fit:contain;border:1px solid #ddd;background:#fff}
.gallery figcaption{font-size:.85em;word-break:break-all}.muted{color:#666}
"""


def page(title: str, body: str, back: bool = True) -> str:
    nav = f'<nav><a href="{INDEX}">← all reports</a></nav>' if back else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>{nav}\n{body}\n</body></html>\n"
    )


def markdown_to_html(text: str) -> str:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    return md.render(text)


def _title_of(markdown: str, fallback: str) -> str:
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def render_markdown_reports(reports_dir: ArtifactPath) -> list[tuple[str, str]]:
    """Render every ``*.md`` of ``reports_dir`` to ``*.html`` (when missing or older);
    returns (html name, title) pairs."""
    out = []
    for name in sorted(list_names(reports_dir)):
        if not name.endswith(".md") or name.startswith("."):
            continue
        src = reports_dir / name
        dest = reports_dir / (name[:-3] + ".html")
        text = src.read_text(encoding="utf-8")
        title = _title_of(text, name[:-3].replace("_", " "))
        if not _is_fresh(dest, src):
            write_text(dest, page(title, markdown_to_html(text)))
        out.append((dest.name, title))
    return out


def _is_fresh(dest, src) -> bool:
    try:
        return dest.exists() and dest.stat().st_mtime >= src.stat().st_mtime
    except (OSError, AttributeError):
        return False


def _plots(layout: DataLayout) -> list[str]:
    """Plot files under ``<data>/plots/`` as paths relative to it (one level of subfolders)."""
    found = []
    root = layout.plots_dir
    for name in sorted(list_names(root)):
        if name.lower().endswith((".png", ".svg", ".jpg")):
            found.append(name)
        elif "." not in name:
            found.extend(
                f"{name}/{sub}"
                for sub in sorted(list_names(root / name))
                if sub.lower().endswith((".png", ".svg", ".jpg"))
            )
    return found


def _summary_html(layout: DataLayout) -> str:
    from music_pipeline.summary import collect, summary_lines

    s = collect(layout.root)
    if not s.tracks:
        return "<p class=muted>No embedding table yet: run <code>music-pipeline build</code>.</p>"
    text = "\n".join(line for line in summary_lines(s) if not line.startswith(("Map of", "All reports")))
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return f"<pre>{html.escape(text.strip())}</pre>"


def write_reports(data_dir) -> ArtifactPath:
    """Render the Markdown reports and (re)write ``reports/index.html``; returns its path."""
    layout = DataLayout(data_dir)
    reports = layout.reports_dir
    rendered = render_markdown_reports(reports) if reports.exists() else []
    rendered_names = {n for n, _ in rendered}
    other_pages = (
        sorted(n for n in list_names(reports) if n.endswith(".html") and n != INDEX and n not in rendered_names)
        if reports.exists()
        else []
    )
    parts = [
        "<h1>music_pipeline reports</h1>",
        f"<p class=muted>{html.escape(str(layout.root))} · written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>",
    ]
    parts.append("<h2>The library</h2>" + _summary_html(layout))
    if rendered:
        parts.append(
            "<h2>Reports</h2><ul>"
            + "".join(f'<li><a href="{html.escape(n)}">{html.escape(t)}</a></li>' for n, t in rendered)
            + "</ul>"
        )
    if other_pages:
        parts.append(
            "<h2>Maps and pages</h2><ul>"
            + "".join(
                f'<li><a href="{html.escape(n)}">{html.escape(n[:-5].replace("_", " "))}</a></li>' for n in other_pages
            )
            + "</ul>"
        )
    plots = _plots(layout)
    if plots:
        rel = (
            os.path.relpath(str(layout.plots_dir), str(reports))
            if not str(reports).startswith(("s3:", "gs:", "az:"))
            else "../plots"
        )
        figures = "".join(
            f'<figure><a href="{html.escape(rel)}/{html.escape(p)}"><img src="{html.escape(rel)}/{html.escape(p)}" alt="{html.escape(p)}" loading="lazy"></a>'
            f"<figcaption>{html.escape(p)}</figcaption></figure>"
            for p in plots
        )
        parts.append(f'<h2>Plots</h2><div class="gallery">{figures}</div>')
    if not (rendered or other_pages or plots):
        parts.append(
            "<p class=muted>No reports yet: the model assets write them when they run (<code>music-pipeline build</code>).</p>"
        )
    return write_text(reports / INDEX, page("music_pipeline reports", "\n".join(parts), back=False))
