"""Erasure reaches every export file that holds a customer's personal data: a file's
manifest label (``personalFields``) is what the scrub trusts, so the label must say what
the file holds whatever the settings say now, and the check after publishing must run
even for a run resumed after its manifest was written."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from shared.exports import service
from shared.exports.keys import resolver
from shared.privacy.personal import PERSONAL_FIELDS
from tests.conftest import add_customer


def _customer_rows(platform, manifest_path: str, customer_id: str) -> list[tuple[list[str], dict]]:
    manifest = json.loads(platform.exports.sink.read(manifest_path))
    found = []
    for entry in manifest["files"]:
        if entry["subject"] == "customers":
            data = b"".join(platform.exports.sink.open(entry["path"], resolver(platform.exports.export_keys, "acme")))
            found += [(entry["personalFields"], row) for row in pq.read_table(pa.BufferReader(data)).to_pylist()
                      if row["customerId"] == customer_id]
    return found


def test_a_compacted_day_is_labelled_with_what_its_sources_hold_and_scrubbed(platform, tenant, clock) -> None:
    """Personal fields exported by the day's micro-batch, then turned off before the day is
    compacted: the compacted file still holds them, so its label must say so."""
    platform.exports.save_settings("acme", [])  # every personal field exported
    day = clock.now().strftime("%Y-%m-%d")
    add_customer(platform, "acme", "p1", email="ann@example.com", name="Ann")
    clock.advance(timedelta(minutes=5))
    platform.exports.microbatch("acme")
    platform.exports.save_settings("acme", list(PERSONAL_FIELDS))  # none exported from now on
    clock.advance(timedelta(days=1))
    platform.exports.run("acme")
    platform.exports.compact("acme", day)
    compacted = f"acme/compacted/{day}/manifest.json"
    (label, row), = _customer_rows(platform, compacted, "p1")
    assert row["email"] == "ann@example.com" and {"email", "name"} <= set(label)
    platform.erasures.erase("acme", "p1", None, reason="asked")
    (_, row), = _customer_rows(platform, compacted, "p1")
    assert row["email"] is None and row["name"] is None and row["erased"]


def test_a_run_resumed_after_its_manifest_was_written_still_checks_for_erasures(platform, tenant, clock,
                                                                               monkeypatch) -> None:
    """The customers file is written; the customer is erased (the scrub finds no manifest of
    this run yet); the manifest is written and the process dies before its check. The
    resumed run must run that check."""
    monkeypatch.setattr(service, "DEFAULT_FORMAT", "ndjson")
    platform.exports.save_settings("acme", [], format="ndjson")
    add_customer(platform, "acme", "p1", email="ann@example.com", name="Ann")
    clock.advance(timedelta(minutes=5))
    assert platform.exports.run_slice("acme", max_files=1) is None  # the customers file, no manifest yet
    platform.erasures.erase("acme", "p1", None, reason="asked")
    scrub = platform.exports._scrub_file

    def died(*args, **kwargs):
        raise RuntimeError("the process died after writing the manifest, in its check")

    monkeypatch.setattr(platform.exports, "_scrub_file", died)
    try:
        platform.exports.run_slice("acme", max_files=None)
    except RuntimeError:
        pass
    monkeypatch.setattr(platform.exports, "_scrub_file", scrub)
    manifest = platform.exports.run("acme")  # the redo: its manifest is out already
    entry = next(f for f in manifest["files"] if f["subject"] == "customers")
    rows = [json.loads(line) for line in
            gzip.decompress(b"".join(platform.exports.file_plaintext("acme", manifest, entry))).splitlines()]
    mine = [r for r in rows if r["customerId"] == "p1"]
    assert mine and all(r.get("email") is None and r.get("name") is None for r in mine), mine
