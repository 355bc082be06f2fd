"""The parsed-document model and one parser per file format (text, HTML, PDF, DOCX, CSV, JSON).

Parsers take raw bytes and return a ParsedDocument; `parsing.parse` picks one by file suffix and
turns library failures into `Invalid`. Heavy libraries are imported inside the parser that needs them.
"""

from __future__ import annotations

import codecs
import csv
import importlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

from outcrop.errors import Invalid

KB_EXTRA = "pip install 'outcrop[kb]'"
# A DOCX is a zip; refuse one that inflates past this before python-docx reads it all into memory.
MAX_DOCX_UNCOMPRESSED = 256 * 1024 * 1024

_HTML_NOISE = ("script", "style", "noscript", "template", "nav", "svg", "iframe", "head")
_HTML_BLOCKS = (
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "ol", "p",
    "pre", "section", "table", "td", "th", "tr", "ul",
)  # fmt: skip


@dataclass(frozen=True)
class Section:
    """A run of document text. `page` is 1-based (PDFs only); an `atomic` section is never split."""

    text: str
    page: int | None = None
    atomic: bool = False


@dataclass(frozen=True)
class ParsedDocument:
    """A document's text in order, plus metadata found in the content itself (e.g. an HTML title)."""

    sections: list[Section]
    metadata: dict[str, Any] = field(default_factory=dict)


def decode_text(data: bytes) -> str:
    """UTF-8 (a BOM is dropped), UTF-16 when it says so with a BOM, else latin-1 (which never fails)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def require(module: str) -> Any:
    """Import an optional dependency, or say which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Invalid(f"reading this file type needs {module}: {KB_EXTRA}") from exc


def _single(text: str, metadata: dict[str, Any] | None = None) -> ParsedDocument:
    sections = [Section(text)] if text.strip() else []
    return ParsedDocument(sections, metadata or {})


def parse_text(data: bytes) -> ParsedDocument:
    """Plain text and Markdown: one section, kept as written."""
    return _single(decode_text(data))


def parse_html(data: bytes) -> ParsedDocument:
    """Visible text, one line per block element; the <title> goes to metadata."""
    bs4 = require("bs4")
    soup = bs4.BeautifulSoup(data, "html.parser")
    title = " ".join(soup.title.get_text().split()) if soup.title else ""
    for tag in soup.find_all(_HTML_NOISE):
        tag.decompose()
    for text in soup.find_all(string=True):
        if type(text) is not bs4.NavigableString:  # comments, the doctype, processing instructions
            text.extract()
        elif not text.find_parent("pre"):
            text.replace_with(re.sub(r"\s+", " ", str(text)))
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    lines = (line.strip() for line in soup.get_text().splitlines())
    return _single("\n".join(line for line in lines if line), {"title": title} if title else {})


def parse_pdf(data: bytes) -> ParsedDocument:
    """One section per page that has text, numbered from 1. Scanned pages (no text layer) are skipped."""
    pypdf = require("pypdf")
    reader = pypdf.PdfReader(io.BytesIO(data))
    # Many PDFs are encrypted with an empty user password (owner restrictions only): those open.
    if reader.is_encrypted and not reader.decrypt(""):
        raise Invalid("unparseable PDF: it is encrypted with a password")
    sections = []
    for number, page in enumerate(reader.pages, start=1):
        text = (page.extract_text() or "").strip()
        if text:
            sections.append(Section(text, page=number))
    return ParsedDocument(sections, {})


def parse_docx(data: bytes) -> ParsedDocument:
    """Paragraphs and table rows in document order, one section; table cells are joined by ' | '."""
    docx = require("docx")
    _check_zip_size(data)
    document = docx.Document(io.BytesIO(data))
    lines: list[str] = []
    for block in document.iter_inner_content():
        if hasattr(block, "rows"):
            lines.extend(_table_lines(block))
        elif block.text.strip():
            lines.append(block.text.strip())
    return _single("\n".join(lines))


def _table_lines(table: Any) -> list[str]:
    lines = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:  # a merged cell appears once per grid column it spans
            if id(cell._tc) not in seen and cell.text.strip():
                seen.add(id(cell._tc))
                cells.append(cell.text.strip())
        if cells:
            lines.append(" | ".join(cells))
    return lines


def _check_zip_size(data: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        if sum(info.file_size for info in archive.infolist()) > MAX_DOCX_UNCOMPRESSED:
            raise Invalid(f"unparseable DOCX: it inflates past {MAX_DOCX_UNCOMPRESSED >> 20} MiB")


def parse_csv(data: bytes) -> ParsedDocument:
    """Each row after the header becomes one atomic section: 'col1: v1, col2: v2'."""
    rows = [row for row in csv.reader(io.StringIO(decode_text(data), newline="")) if any(v.strip() for v in row)]
    if not rows:
        return ParsedDocument([], {})
    header = [name.strip() for name in rows[0]]
    return ParsedDocument([Section(_render_row(header, row), atomic=True) for row in rows[1:]], {})


def _render_row(header: list[str], row: list[str]) -> str:
    names = header + [f"column{i + 1}" for i in range(len(header), len(row))]
    return ", ".join(f"{name}: {value.strip()}" for name, value in zip(names, row, strict=False))


def parse_json(data: bytes) -> ParsedDocument:
    """The whole value, pretty-printed, as one section."""
    value = json.loads(decode_text(data))
    return _single(json.dumps(value, indent=2, ensure_ascii=False))


def parse_jsonl(data: bytes) -> ParsedDocument:
    """One atomic section per non-blank line, each re-rendered as compact JSON."""
    sections = []
    for number, line in enumerate(decode_text(data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise Invalid(f"unparseable JSONL: line {number}: {exc}") from exc
        sections.append(Section(json.dumps(value, ensure_ascii=False), atomic=True))
    return ParsedDocument(sections, {})
