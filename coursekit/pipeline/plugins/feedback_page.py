"""generate_feedback's exporter (``GenerateFeedback.exporter_class``): the course's feedback page,
its math as MathML, made fast for a process that makes a class's pages."""
import copy
import json
import os
import re
from xml.etree import ElementTree

import jinja2
import latex2mathml.converter
from jinja2 import pass_context as contextfilter
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbformat import NotebookNode
from traitlets import default

from coursekit.pipeline import markup


class _CompiledTemplates(jinja2.BytecodeCache):
    """Jinja's compiled templates, kept in memory for the life of the process. Jinja checks each
    template's source against the checksum stored with its code, so an edited template is compiled again."""

    def __init__(self):
        self._code = {}

    def load_bytecode(self, bucket):
        if bucket.key in self._code:
            bucket.bytecode_from_string(self._code[bucket.key])

    def dump_bytecode(self, bucket):
        self._code[bucket.key] = bucket.bytecode_to_string()


_TEMPLATES = _CompiledTemplates()


class FeedbackHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter with the course's feedback page (templates/course_feedback), whose
    math is MathML made here: it renders without MathJax, which a page opened offline cannot load.

    It is also faster when a process makes the feedback of many students: it compiles its
    templates once per process instead of once per page (a tenth of a second each), renders each
    Markdown cell and highlights each code cell once per process (a class's pages share most of
    their cells: the release's), and adds the alt text and tabindex attributes that HTMLExporter
    adds without parsing the whole page with BeautifulSoup (a twelfth of a second a page).
    """

    cleans_markup = True  # (markup.render_markup_inert leaves it as it is: it cleans its own)

    def __init__(self, config=None, **kwargs):
        self._formulas_left = MAX_FORMULAS
        # nbgrader's generate_feedback configures its "feedback" template; the course's replaces it
        if config is not None and config.HTMLExporter.get("template_name") == "feedback":
            config = copy.deepcopy(config)
            config.HTMLExporter.template_name = "course_feedback"
            config.HTMLExporter.extra_template_basedirs = [TEMPLATES, *config.HTMLExporter.get("extra_template_basedirs", [])]
        super().__init__(config=config, **kwargs)

    @contextfilter
    def markdown2html(self, context, source):
        if self.template_name != "course_feedback":
            return super().markdown2html(context, source)
        cell = context.get("cell", {})
        options = dict(attachments=cell.get("attachments", {}), embed_images=self.embed_images,
                       path=context.get("resources", {}).get("metadata", {}).get("path", ""),
                       anchor_link_text=self.anchor_link_text, exclude_anchor_links=self.exclude_anchor_links,
                       **self.lexer_options)
        # (the path only matters for embedded images, which are not remembered: each student's
        # scratch course has its own, and the release's cells are the same in all of them)
        key = None if self.embed_images else (
            "markdown", source, json.dumps({**options, "path": None}, sort_keys=True, default=str))
        if self._formulas_left <= 0:  # the page's math budget is spent: LaTeX stays as it was written
            key = None if key is None else (*key, "no math")
        renderer = _MathMLRenderer(escape=False, page=self, **options)
        html = _remembered(key, lambda: markup.clean_html(MarkdownWithMath(renderer=renderer).render(source)))
        if renderer.budget_ran_out:  # (its math is converted up to a point that depends on the page)
            _remembered.forget(key)
        return html

    @default("sanitize_html")
    def _sanitize_html_default(self):
        return True  # (nbconvert's templates then pass outputs through the clean_html filter: the course's)

    def default_filters(self):
        for name, function in super().default_filters():
            yield name, markup.clean_html if name == "clean_html" else function

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = _TEMPLATES
        return environment

    def from_notebook_node(self, nb: NotebookNode, resources: dict | None = None, **kw) -> tuple[str, dict]:
        # HTMLExporter.from_notebook_node up to its BeautifulSoup pass, which _accessible replaces
        language = nb.metadata.get("language_info", {})
        lexer = language.get("pygments_lexer", language.get("name", None))
        highlight = self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        self.register_filter("highlight_code", _RememberedHighlight(highlight) if isinstance(highlight, Highlight2HTML) else highlight)
        resources = self._init_resources(resources)
        resources["content_security_policy"] = markup.FEEDBACK_POLICY
        self._formulas_left = MAX_FORMULAS
        self.register_filter("filter_data_type", WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self,
                                                                       resources=resources))
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        return _accessible(html), resources


class _Remembered:
    """What the feedback pages of this process rendered: (kind, source, options) -> HTML, up to
    ``limit`` bytes (then it starts again: a huge notebook must not fill a worker's memory)."""

    def __init__(self, limit):
        self.found, self.bytes, self.limit = {}, 0, limit

    def forget(self, key):
        if key in self.found:
            self.bytes -= len(key[1]) + len(self.found.pop(key))

    def __call__(self, key, render):
        """``render()``, or what it returned the last time for ``key`` (None: not to be remembered)."""
        if key is None:
            return render()
        if key not in self.found:
            html = render()
            size = len(key[1]) + len(html)
            if size > self.limit // 16:
                return html
            if self.bytes + size > self.limit:
                self.found, self.bytes = {}, 0
            self.found[key], self.bytes = html, self.bytes + size
        return self.found[key]


_remembered = _Remembered(64 * 2 ** 20)


class _RememberedHighlight:
    """nbconvert's highlight_code filter (a Highlight2HTML), through _remembered."""

    def __init__(self, highlight):
        self.highlight = highlight

    def __call__(self, source, language=None, metadata=None):
        key = ("code", source, repr((self.highlight.pygments_lexer, self.highlight.extra_formatter_options, language,
                                     (metadata or {}).get("magics_language"))))
        return _remembered(key, lambda: self.highlight(source, language, metadata))


# the course's nbconvert templates (course_feedback), in the pipeline's folder
TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates")


# A feedback page converts at most this many formulas to MathML, each of at most MAX_FORMULA characters:
# the rest stays LaTeX, as written (latex2mathml has no limit of its own on time or size).
MAX_FORMULAS, MAX_FORMULA = 2000, 2000


class _MathMLRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, with LaTeX math as MathML; what latex2mathml cannot
    convert, and what is past the ``page``'s budget (FeedbackHTMLExporter), stays LaTeX, as it was written."""

    def __init__(self, *args, page=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.page, self.budget_ran_out = page, False

    def _converted(self, latex, display):
        if self.page is not None:
            if self.page._formulas_left <= 0 or len(latex) > MAX_FORMULA:
                self.budget_ran_out = self.budget_ran_out or self.page._formulas_left <= 0
                return None
            self.page._formulas_left -= 1
        return _mathml(latex, display)

    def inline_math(self, body):
        return self._converted(body, "inline") or super().inline_math(body)

    def block_math(self, body):
        return self._converted(body, "block") or super().block_math(body)

    def latex_environment(self, name, body):
        return self._converted(f"\\begin{{{name}}}{body}\\end{{{name}}}", "block") or super().latex_environment(name, body)


def markdown_with_mathml(source: str) -> str:
    """Markdown as HTML, its math as MathML (as on the feedback pages)."""
    return MarkdownWithMath(renderer=_MathMLRenderer(escape=False)).render(source)


def _mathml(latex, display):
    """MathML for ``latex``, or None when latex2mathml cannot convert it or its output is not
    MathML alone (it copies ``\\text{...}`` as it is, markup included)."""
    try:
        mathml = latex2mathml.converter.convert(latex, display=display)
        tree = ElementTree.fromstring(mathml)
    except Exception:  # noqa: BLE001 - its parser raises many kinds
        return None
    for element in tree.iter():
        name = element.tag.rsplit("}", 1)[-1]
        if name not in markup.MATHML or any(key.lower().startswith("on") or "href" in key.lower() for key in element.attrib):
            return None
    return mathml



MISSING_ALT = "No description has been provided for this image"
# comments and the elements whose text holds no tags
_RAW_TEXT = re.compile(r"<!--.*?(?:-->|\Z)|<(script|style|textarea|title)\b.*?(?:</\1\s*>|\Z)", re.S | re.I)
# a whole start tag, whatever its name (so that an "<img" inside another tag's attribute is not one);
# no "<" in an attribute name: a scan that fails stops at the next "<" (linear time on any text)
_TAG = re.compile(r"""<([a-zA-Z][\w:-]*)((?:\s+[^\s"'<>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*)(\s*/?)>""")
_ATTRIBUTE = re.compile(r"""\s+([^\s"'<>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
_FOCUSABLE = {"jp-Cell-inputWrapper", "jp-OutputArea-output"}  # inside .jp-Notebook


def _accessible(html):
    """What HTMLExporter's BeautifulSoup pass does to a page: alt text for every image without
    one, and tabindex="0" on the input and output areas of the notebook's cells."""
    notebook = re.search(r"""\sclass\s*=\s*["']?[^"'>]*\bjp-Notebook\b""", html)
    start = notebook.start() if notebook else len(html)
    pieces, done = [], 0
    for raw in [*_RAW_TEXT.finditer(html), None]:
        end = raw.start() if raw else len(html)
        pieces.append(_TAG.sub(lambda tag, at=done: _with_attributes(tag, at + tag.start() > start), html[done:end]))
        if raw:
            pieces.append(raw.group())
            done = raw.end()
    return "".join(pieces)


def _with_attributes(tag, in_notebook):
    name, attributes, end = tag.groups()
    if name.lower() not in ("img", "div"):
        return tag.group()
    found = {match.group(1).lower(): match for match in _ATTRIBUTE.finditer(attributes)}
    if name.lower() == "img" and "alt" not in found:
        return f'<{name}{attributes} alt="{MISSING_ALT}"{end}>'
    classes = found.get("class") and found["class"].group(2) or ""
    if name.lower() == "div" and in_notebook and _FOCUSABLE & set(classes.strip("\"'").split()):
        if "tabindex" in found:
            match = found["tabindex"]
            attributes = f'{attributes[:match.start()]} {match.group(1)}="0"{attributes[match.end():]}'
            return f"<{name}{attributes}{end}>"
        return f'<{name}{attributes} tabindex="0"{end}>'
    return tag.group()
