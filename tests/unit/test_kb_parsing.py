import io
import json
import sys

import docx
import pytest
from fpdf import FPDF

from outcrop.core.knowledge.parsing import (
    PARSERS,
    ParsedDocument,
    Section,
    inline_metadata,
    is_sidecar,
    parse,
    parse_sidecar,
    sidecar_for,
)
from outcrop.errors import Invalid


def make_pdf(pages: list[str], **encryption: str) -> bytes:
    pdf = FPDF()
    if encryption:
        pdf.set_encryption(**encryption)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def make_docx() -> bytes:
    document = docx.Document()
    document.core_properties.title = "ignored"
    document.add_paragraph("Quarterly report for the river survey.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("site", "flow"), ("north", "12")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("Closing remarks.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def texts(doc: ParsedDocument) -> list[str]:
    return [s.text for s in doc.sections]


# -- formats ------------------------------------------------------------------------------------------


def test_registry_covers_bedrock_text_formats():
    assert set(PARSERS) == {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv", ".json", ".jsonl"}


def test_pdf_gives_one_section_per_page_with_page_numbers():
    sentences = ["Granite forms from slow cooling magma.", "Basalt is a volcanic rock.", "Shale splits into layers."]
    doc = parse("rocks.pdf", make_pdf(sentences))
    assert [(s.page, s.text) for s in doc.sections] == [(1, sentences[0]), (2, sentences[1]), (3, sentences[2])]
    assert not any(s.atomic for s in doc.sections)


def test_pdf_skips_empty_pages_but_keeps_numbering():
    doc = parse("gaps.pdf", make_pdf(["First page.", "", "Third page."]))
    assert [s.page for s in doc.sections] == [1, 3]


def test_pdf_encrypted_only_for_the_owner_still_opens():
    doc = parse("locked.pdf", make_pdf(["Readable anyway."], owner_password="owner"))
    assert texts(doc) == ["Readable anyway."]


def test_pdf_needing_a_password_is_invalid():
    with pytest.raises(Invalid, match="encrypted"):
        parse("secret.pdf", make_pdf(["Hidden."], owner_password="o", user_password="u"))


def test_garbage_pdf_is_invalid_and_keeps_the_cause():
    with pytest.raises(Invalid, match="^unparseable PDF: ") as caught:
        parse("broken.pdf", b"this is not a pdf at all")
    assert caught.value.__cause__ is not None


def test_docx_paragraphs_and_table_cells_in_order():
    doc = parse("report.docx", make_docx())
    assert texts(doc) == ["Quarterly report for the river survey.\nsite | flow\nnorth | 12\nClosing remarks."]


def test_garbage_docx_is_invalid():
    with pytest.raises(Invalid, match="^unparseable DOCX: "):
        parse("broken.docx", b"PK not really a zip")


HTML = b"""<!doctype html><html><head><title> River  Survey </title>
<style>body { color: red }</style><script>var secret = 1;</script></head>
<body><nav><a href="/">Home</a> | <a href="/x">Menu</a></nav>
<h1>Findings</h1><!-- a hidden comment -->
<p>The water is <b>clear</b>
   and cold.</p><div>Flow: 12<br>Depth: 3</div>
<script>alert('x')</script><ul><li>one</li><li>two</li></ul></body></html>"""


def test_html_keeps_visible_text_one_line_per_block():
    doc = parse("survey.HTML", HTML)
    assert texts(doc) == ["Findings\nThe water is clear and cold.\nFlow: 12\nDepth: 3\none\ntwo"]
    assert doc.metadata == {"title": "River Survey"}


def test_html_without_title_has_no_metadata():
    assert parse("a.htm", b"<p>hello</p>").metadata == {}


def test_text_and_markdown_are_one_section_kept_as_written():
    markdown = "# Title\n\nSome *emphasis* here.\n"
    assert texts(parse("notes.md", markdown.encode())) == [markdown]
    assert texts(parse("NOTES.TXT", b"plain")) == ["plain"]
    assert texts(parse("x.markdown", b"  \n ")) == []


def test_utf8_bom_is_dropped_and_latin1_is_the_fallback():
    assert texts(parse("bom.txt", "\ufeffcaf\u00e9".encode())) == ["caf\u00e9"]
    assert texts(parse("old.txt", "caf\u00e9".encode("latin-1"))) == ["caf\u00e9"]
    assert texts(parse("wide.txt", "na\u00efve".encode("utf-16"))) == ["na\u00efve"]


def test_csv_rows_become_atomic_sections_named_by_the_header():
    data = '\ufeffname,city,note\nAda,London,"likes, commas"\n\nBob,Paris,\n'.encode()
    doc = parse("people.csv", data)
    assert doc.sections == [
        Section("name: Ada, city: London, note: likes, commas", atomic=True),
        Section("name: Bob, city: Paris, note: ", atomic=True),
    ]


def test_csv_extra_values_get_column_names():
    doc = parse("ragged.csv", b"a,b\n1,2,3\n")
    assert texts(doc) == ["a: 1, b: 2, column3: 3"]


def test_json_is_one_readable_section():
    doc = parse("config.json", json.dumps({"name": "caf\u00e9", "tags": [1, 2]}).encode())
    assert texts(doc) == ['{\n  "name": "caf\u00e9",\n  "tags": [\n    1,\n    2\n  ]\n}']


def test_bad_json_is_invalid():
    with pytest.raises(Invalid, match="^unparseable JSON: "):
        parse("bad.json", b"{not json")


def test_jsonl_lines_are_atomic_sections():
    doc = parse("rows.jsonl", b'{"q": "a?"}\n\n{"q": "b?"}\n')
    assert doc.sections == [Section('{"q": "a?"}', atomic=True), Section('{"q": "b?"}', atomic=True)]


def test_bad_jsonl_line_is_named():
    with pytest.raises(Invalid, match="line 2"):
        parse("rows.jsonl", b'{"ok": 1}\n{oops\n')


def test_unknown_suffix_is_invalid():
    with pytest.raises(Invalid, match=r"unsupported file type \.xyz"):
        parse("data.xyz", b"hello")
    with pytest.raises(Invalid, match="unsupported file type"):
        parse("README", b"hello")


def test_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pypdf", None)  # makes `import pypdf` raise ImportError
    with pytest.raises(Invalid, match=r"pip install 'outcrop\[kb\]'"):
        parse("rocks.pdf", b"%PDF-1.4")


# -- metadata sidecars --------------------------------------------------------------------------------


def test_sidecar_names():
    assert sidecar_for("docs/report.pdf") == "docs/report.pdf.metadata.json"
    assert is_sidecar("docs/report.pdf.metadata.json")
    assert not is_sidecar("docs/report.pdf")
    assert not is_sidecar("metadata.json")
    assert not is_sidecar("docs/.metadata.json")


def test_sidecar_plain_form():
    data = json.dumps({"metadataAttributes": {"year": 2021, "genre": "x", "tags": ["a", "b"], "public": True}})
    assert parse_sidecar(data.encode()) == {"year": 2021, "genre": "x", "tags": ["a", "b"], "public": True}


def test_sidecar_typed_form():
    attributes = {
        "year": {"value": {"type": "NUMBER", "numberValue": 2021}, "includeForEmbedding": True},
        "ratio": {"value": {"type": "NUMBER", "numberValue": 0.5}},
        "genre": {"value": {"type": "STRING", "stringValue": "x"}},
        "public": {"value": {"type": "BOOLEAN", "booleanValue": False}},
        "tags": {"value": {"type": "STRING_LIST", "stringListValue": ["a", "b"]}},
    }
    data = json.dumps({"metadataAttributes": attributes}).encode("utf-8-sig")
    assert parse_sidecar(data) == {"year": 2021, "ratio": 0.5, "genre": "x", "public": False, "tags": ["a", "b"]}


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"nested": 1},
        [1, 2],
        {"value": {"type": "NUMBER", "numberValue": True}},
        {"value": {"type": "BOOLEAN", "booleanValue": 1}},
        {"value": {"type": "NUMBER", "stringValue": "2021"}},
        {"value": {"type": "DATE", "stringValue": "2021"}},
    ],
)
def test_sidecar_bad_values_name_the_key(value):
    with pytest.raises(Invalid, match="'year'"):
        parse_sidecar(json.dumps({"metadataAttributes": {"year": value}}).encode())


@pytest.mark.parametrize("data", [b"{not json", b'{"metadataAttributes": {"x": NaN}}', b"[]", b'{"other": {}}'])
def test_bad_sidecar_documents_are_invalid(data):
    with pytest.raises(Invalid, match="metadata file"):
        parse_sidecar(data)


def test_inline_attributes_use_the_typed_form():
    attributes = [
        {"key": "year", "value": {"type": "NUMBER", "numberValue": 2021}},
        {"key": "tags", "value": {"type": "STRING_LIST", "stringListValue": ["a"]}},
    ]
    assert inline_metadata(attributes) == {"year": 2021, "tags": ["a"]}


def test_inline_attributes_refuse_duplicates_and_untyped_values():
    with pytest.raises(Invalid, match="twice"):
        inline_metadata([{"key": "a", "value": {"type": "STRING", "stringValue": "x"}}] * 2)
    with pytest.raises(Invalid, match="'a'"):
        inline_metadata([{"key": "a", "value": "x"}])
    with pytest.raises(Invalid, match="key"):
        inline_metadata([{"value": {"type": "STRING", "stringValue": "x"}}])
