"""Executed notebooks -> standalone HTML that works offline.

nbconvert's default page pulls require.js, MathJax and mermaid from CDNs; offline those fail
(and a browser logs errors). The figures here carry plotly.js inline, so the page needs none of
them: this template leaves them out, and widget state (which would need the widget manager from a
CDN) is dropped, since headless runs show static outputs anyway.
"""

from __future__ import annotations

from pathlib import Path

_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""


def export_html(notebook: Path | str, output: Path | str) -> Path:
    """Write ``notebook`` (executed) as one offline HTML page at ``output``."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    nb.metadata.pop("widgets", None)
    exporter = HTMLExporter(
        extra_loaders=[DictLoader({"specwright_offline.html.j2": _TEMPLATE})],
        template_file="specwright_offline.html.j2",
    )
    body, _resources = exporter.from_notebook_node(nb)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out
