"""A small mixed corpus for the knowledge-base tests: each file states facts no model knows by heart,
so an answer that has them came from retrieval. Every format Bedrock ingests, with metadata sidecars."""

from __future__ import annotations

import io
import json
from typing import Any


def pdf(pages: list[str]) -> bytes:
    from fpdf import FPDF

    doc = FPDF()
    doc.set_font("helvetica", size=12)
    for text in pages:
        doc.add_page()
        doc.multi_cell(0, 8, text)
    return bytes(doc.output())


def docx(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    import docx as python_docx

    doc = python_docx.Document()
    for paragraph in paragraphs:
        doc.add_paragraph(paragraph)
    if table:
        grid = doc.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def sidecar(**attributes: Any) -> bytes:
    return json.dumps({"metadataAttributes": attributes}).encode()


MANUAL_PAGES = [
    "Heron sensor installation manual. Unpack the Heron sensor and mount it on a level bracket. "
    "Keep the sensor away from direct sunlight during installation.",
    "Calibration. The calibration code for the Heron sensor is HX-4471. Enter the calibration code in the "
    "console after the sensor has warmed up for ten minutes.",
    "Maintenance. Clean the Heron sensor lens every ninety days with a dry cloth. Replace the gasket yearly.",
]

# name → (bytes, sidecar attributes)
S3_FILES: dict[str, tuple[bytes, dict[str, Any]]] = {
    "docs/manual.pdf": (pdf(MANUAL_PAGES), {"department": "engineering", "year": 2023,
                                            "tags": ["hardware", "sensor"], "confidential": False}),
    "docs/team-notes.docx": (docx(["The Lisbon team meets every Thursday at the Quay Room.",
                                   "The Lisbon team lead is Marta Quintela."],
                                  [["project", "owner"], ["Tidewater", "Marta Quintela"]]),
                             {"department": "operations", "year": 2021, "tags": ["team", "meetings"],
                              "confidential": True}),
    "docs/inventory.csv": (b"item,quantity,warehouse\nZephyr-9 pump,14,Rotterdam\nHeron sensor,52,Tallinn\n"
                           b"Kestrel valve,7,Rotterdam\n",
                           {"department": "logistics", "year": 2024, "tags": ["stock"], "confidential": False}),
    "docs/broken.pdf": (b"%PDF-1.7 this is not really a pdf \x00\x01\x02", {}),
}

DIR_FILES: dict[str, tuple[bytes, dict[str, Any]]] = {
    "pump.txt": (b"The Zephyr-9 pump operates at a maximum pressure of 412 kilopascals. "
                 b"Its impeller is made of bronze and must be inspected every 600 hours of operation.",
                 {"department": "engineering", "year": 2022, "tags": ["hardware", "pump"], "confidential": False}),
    "handbook.md": (b"# Employee handbook\n\n## Vacation\n\nEmployees accrue 23 vacation days per year. "
                    b"Unused vacation days expire at the end of March.\n\n## Remote work\n\n"
                    b"Remote work is allowed three days a week.\n",
                    {"department": "people", "year": 2024, "tags": ["policy", "hr"], "confidential": False}),
    "office.html": (b"<html><head><title>Orchard Street office</title><script>var tracking = 1;</script>"
                    b"<style>p {color: red}</style></head><body><nav>Home | About</nav>"
                    b"<p>The Orchard Street office opens at 7:45 am and closes at 6 pm.</p>"
                    b"<p>Visitors sign in at the front desk on the ground floor.</p></body></html>",
                    {"department": "facilities", "year": 2020, "tags": ["office"], "confidential": False}),
}


def with_sidecars(files: dict[str, tuple[bytes, dict[str, Any]]]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, (data, attributes) in files.items():
        out[name] = data
        if attributes:
            out[name + ".metadata.json"] = sidecar(**attributes)
    return out
