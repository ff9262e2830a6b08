"""Student markup, made inert on every page that staff or students open.

A student can put any HTML in a Markdown cell, a written answer or an output: on formgrader's
pages (the Jupyter server's own origin, a TA logged in) and on the feedback page it would run
as the reader. Every such fragment goes through ``clean_html`` (the maintained sanitizer nh3,
Rust's ammonia): what a notebook needs to show text, tables, images, code and MathML stays;
scripts, event handlers, styles, forms, frames and URLs other than http(s) and mailto go.

- The feedback page (pipeline.plugins.feedback_page.FeedbackHTMLExporter) cleans every Markdown cell
  and HTML output, and forbids every script with its Content-Security-Policy (FEEDBACK_POLICY).
- formgrader's pages come from nbconvert's HTMLExporter, made by formgrader itself; nbgrader_config.py
  calls ``render_markup_inert()``, which has every HTMLExporter of the process clean the same
  fragments (formgrader's own scripts are its template's, not cells', and still run).
"""
from html.parser import HTMLParser

import nh3
from jinja2 import pass_context
from nbconvert.exporters import HTMLExporter

MATHML = {"math", "mi", "mn", "mo", "ms", "mtext", "mspace", "mrow", "mfrac", "msqrt", "mroot", "mstyle", "merror",
          "mpadded", "mphantom", "menclose", "msub", "msup", "msubsup", "munder", "mover", "munderover",
          "mmultiscripts", "mprescripts", "none", "mtable", "mtr", "mtd", "mlabeledtr", "semantics", "annotation"}
TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd", "del", "details",
        "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
        "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary",
        "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var"} | MATHML
ATTRIBUTES = {
    "*": {"class", "title", "lang", "dir", "align"},  # (no id or name: they could shadow a page script's globals)
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan", "scope"}, "ol": {"start", "type"},
    "math": {"display", "xmlns"}, "mstyle": {"displaystyle", "scriptlevel", "mathvariant"},
    "mi": {"mathvariant"}, "mn": {"mathvariant"}, "mtext": {"mathvariant"},
    "mo": {"stretchy", "fence", "separator", "lspace", "rspace", "form", "largeop", "movablelimits", "accent"},
    "mfrac": {"linethickness"}, "mspace": {"width"}, "mover": {"accent"}, "munder": {"accentunder"},
    "mtable": {"columnalign", "rowspacing", "columnspacing"}, "mtd": {"columnalign", "columnspan"},
    "menclose": {"notation"}, "mpadded": {"width", "height", "depth", "lspace", "voffset"}, "annotation": {"encoding"},
}
URL_SCHEMES = {"http", "https", "mailto"}
# What a feedback page shows of one cell's source (pipeline.plugins.feedback.BoundedFeedback).
FEEDBACK_CELL_BYTES = 64 * 2 ** 10
# The feedback page needs no script at all: its math is MathML, its styles are inline, its images data: URLs.
FEEDBACK_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data: http: https:; font-src data:; "
                   "form-action 'none'; base-uri 'none'")


def clean_html(html):
    """``html`` with only inert markup left (see the module's docstring)."""
    return nh3.clean(str(html), tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES,
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


def render_markup_inert():
    """Have every nbconvert HTMLExporter made in this process afterwards (formgrader's, in the Jupyter
    server that reads nbgrader_config.py) pass Markdown cells, HTML and SVG outputs and raw cells
    through clean_html. formgrader makes its exporter itself: this is the one place to say it."""
    if getattr(HTMLExporter, "_renders_markup_inert", False):
        return
    default_filters = HTMLExporter.default_filters

    def inert_filters(self):
        if getattr(self, "cleans_markup", False):  # (the feedback exporter: its filters clean already)
            yield from default_filters(self)
            return
        for name, function in default_filters(self):
            if name == "markdown2html":
                function = _cleaned(function)
            elif name == "clean_html":
                function = clean_html
            yield name, function

    from_notebook_node = HTMLExporter.from_notebook_node

    def sanitizing(self, nb, resources=None, **kw):
        self.sanitize_html = True  # nbconvert's templates pass outputs through clean_html only then
        return from_notebook_node(self, nb, resources, **kw)

    HTMLExporter.default_filters, HTMLExporter.from_notebook_node = inert_filters, sanitizing
    HTMLExporter._renders_markup_inert = True


def _cleaned(markdown2html):
    @pass_context
    def inert(context, source):
        return clean_html(markdown2html(context, source))
    return inert


ACTIVE_TAGS = {"script", "iframe", "frame", "object", "embed", "applet", "base", "meta", "form", "link", "style"}


def active_markup(html):
    """What in ``html`` would run or restyle a page if nobody cleaned it (for the tamper report):
    a list of short descriptions, empty for inert markup."""
    found = []

    class Scan(HTMLParser):
        def handle_starttag(self, tag, attributes):
            if tag in ACTIVE_TAGS:
                found.append(f"<{tag}>")
            for name, value in attributes:
                url = "".join((value or "").split()).lower()
                if name.startswith("on"):
                    found.append(f"an {name} handler")
                elif url.startswith(("javascript:", "vbscript:", "data:text/html")):
                    found.append(f"a {url.split(':')[0]}: URL")

    try:
        Scan().feed(html)
    except Exception:  # noqa: BLE001 - html.parser gives up on some malformed input: so would we
        found.append("markup the parser cannot read")
    return sorted(set(found))
