"""docs/exports.md and the shipped schemas agree: the column tables are the ones generated
from shared.exports.columns (what the manifest ships and the Parquet files hold), and the
columns are the JSON Schemas' properties (plus the Parquet-only merge and scale columns)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.exports.columns import COLUMNS, docs_tables, schema_of
from shared.exports.parquet import arrow_schema
from shared.exports.service import SUBJECTS

ROOT = Path(__file__).resolve().parents[3]
PARQUET_ONLY = {"rowKey", "rowVersion", "currencyScale"}


def test_the_docs_column_tables_are_generated_from_the_shipped_schemas() -> None:
    assert docs_tables() in (ROOT / "docs/exports.md").read_text(encoding="utf-8"), \
        "regenerate: python -m shared.exports.columns"


def test_every_subject_is_documented_once() -> None:
    assert set(COLUMNS) == set(SUBJECTS) and len(SUBJECTS) == 8
    docs = (ROOT / "docs/exports.md").read_text(encoding="utf-8")
    for subject in SUBJECTS:
        assert f"| `{subject}` |" in docs and f"### `{subject}`" in docs


def test_columns_are_the_json_schemas_properties() -> None:
    for subject in SUBJECTS:
        schema = json.loads((ROOT / f"shared/schemas/events/export.{subject}.v1.json").read_text(encoding="utf-8"))
        columns = {c["name"] for c in schema_of(subject)["columns"]}
        assert columns - PARQUET_ONLY == set(schema["properties"]), subject
        assert arrow_schema(subject).names == [c["name"] for c in schema_of(subject)["columns"]]
