"""After an erasure, look for the customer in every byte of every store.

A reusable test helper (the unit platform and the e2e local platform both use it):

* **where**: every file under the data folder, byte for byte: the SQLite store
  with its ``-wal``/``-shm``, the queue, the keyring, blobs (exports, audit
  archive, erasure log, sidecars), lock files, any log file; plus texts the
  test hands in (captured log records, a process's output, API responses);
  plus the **plaintext of every export file** (client-side encrypted Parquet or NDJSON,
  and ``ACRXENC1`` NDJSON of earlier runs) found there,
  decrypted with the key provider of the same folder, as an attacker holding
  the folder would;
* **what**: each personal value (every leaf of every personal field, the
  normalised email too), the customer's wrapped data key, the sealed field
  envelopes and the blind-index id;
* **in which forms**: UTF-8 as is and case-folded, JSON-escaped (``ensure_ascii``
  on and off), base64 (standard and URL-safe, at each of the three byte
  alignments, so a value inside a longer encoded string is found too), hex,
  and UTF-16 (LE and BE).

``ErasureScan(data_dir, keys).findings(needles)`` lists every hit as
``"<what> as <form> in <where>"``; ``assert_clean`` fails with that list.
Use ``needles_of`` to build the needles from a registration body and the
store's documents *before* erasing (the test then proves they were there).
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from shared.exports.crypto import MAGIC, decrypt_stream, read_header
from shared.privacy.personal import PERSONAL_FIELDS, normalise_email

MIN_NEEDLE = 4  # shorter values (a country code) would match by chance
MIN_BASE64 = 10  # base64 text is common in the files: shorter cores would match other customers' data


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif value is not None:
        yield str(value)


def _b64_forms(raw: bytes) -> dict[str, bytes]:
    """The base64 text ``raw`` has inside any longer base64 string, at each alignment:
    only the characters that depend on ``raw`` alone."""
    forms: dict[str, bytes] = {}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        head = (offset * 4 + 2) // 3  # characters that mix in the padding before
        usable = (offset + len(raw)) // 3 * 4  # whole groups only: the tail mixes what follows
        core = encoded[head:usable]
        if len(core) >= MIN_BASE64:
            forms[f"base64@{offset}"] = core
            forms[f"base64url@{offset}"] = core.replace(b"+", b"-").replace(b"/", b"_")
    return forms


def forms_of(value: str | bytes) -> dict[str, bytes]:
    """Every form of ``value`` the scan looks for (module docstring)."""
    if isinstance(value, bytes):
        forms = {"raw": value, "hex": value.hex().encode()}
        forms.update(_b64_forms(value))
        return forms
    forms = {"utf-8": value.encode(), "casefolded": value.casefold().encode(),
             "json": json.dumps(value)[1:-1].encode(),
             "json-unicode": json.dumps(value, ensure_ascii=False)[1:-1].encode(),
             "utf-16-le": value.encode("utf-16-le"), "utf-16-be": value.encode("utf-16-be")}
    forms.update(_b64_forms(value.encode()))
    return {name: form for name, form in forms.items() if len(form) >= MIN_NEEDLE}


@dataclass
class Needles:
    """What must be gone: label -> value (text, or raw bytes such as a wrapped key)."""

    values: dict[str, str | bytes] = field(default_factory=dict)

    def add(self, label: str, value: str | bytes | None) -> None:
        if value is not None and len(value) >= MIN_NEEDLE:
            self.values[label] = value


def needles_of(body: Mapping[str, Any], stored: Mapping[str, Any] | None = None,
               wrapped_dek: Mapping[str, Any] | None = None) -> Needles:
    """Needles from a registration body (every personal field's leaves), the stored
    profile (its envelopes, the blind-index id) and the ``piikeys`` document."""
    needles = Needles()
    for name in PERSONAL_FIELDS:
        for number, leaf in enumerate(_leaves(body.get(name))):
            needles.add(f"{name}[{number}]", leaf)
    if body.get("email"):
        needles.add("email(normalised)", normalise_email(body["email"]))
    if stored is not None:
        for name, envelope in (stored.get("personal") or {}).items():
            needles.add(f"envelope:{name}", envelope.rsplit(".", 1)[-1])
        needles.add("blind-index id", stored.get("emailIndex"))
        # The keyed hash of the birth month-day (shared.occasions): its partition key.
        needles.add("birthday index", (stored.get("birthdayIndex") or "").rpartition(":")[2] or None)
    if wrapped_dek is not None:
        raw = base64.b64decode(wrapped_dek["wrapped"])
        needles.add("wrapped DEK", raw)
        needles.add("wrapped DEK (base64 text)", wrapped_dek["wrapped"])
    return needles


class ErasureScan:
    def __init__(self, data_dir: Path, keys: Any = None) -> None:
        self.data_dir = Path(data_dir)
        self.keys = keys

    def places(self, texts: Mapping[str, bytes | str] | None = None) -> dict[str, bytes]:
        """Where -> bytes: every file, every export's plaintext, the texts handed in."""
        places: dict[str, bytes] = {}
        for path in sorted(self.data_dir.rglob("*")):
            if not path.is_file():
                continue
            content = path.read_bytes()
            where = str(path.relative_to(self.data_dir))
            places[where] = content
            if content.startswith(MAGIC):
                places[where + " (decrypted)"] = self._export_plaintext(path)
            encryption = self._client_side_encryption(path)
            if encryption is not None:
                places[where + " (decrypted)"] = self._parquet_plaintext(content, encryption)
        for name, text in (texts or {}).items():
            places[name] = text.encode() if isinstance(text, str) else text
        return places

    def _client_side_encryption(self, path: Path) -> str | None:
        """The ``encryptiondata`` of a local blob (its sidecar in the blob folder's ``.meta``), if any."""
        for folder in path.parents:
            sidecar = folder / ".meta" / (str(path.relative_to(folder)) + ".json")
            if sidecar.is_file():
                return json.loads(sidecar.read_text()).get("metadata", {}).get("encryptiondata")
            if folder == self.data_dir:
                return None
        return None

    def _parquet_plaintext(self, content: bytes, encryption: str) -> bytes:
        """An export file under Azure client-side encryption (the tenant's export key, the
        folder's export keyring), decrypted; Parquet is compressed, so its rows as JSON."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from shared.blobs import cse
        from shared.exports.keys import resolver
        from shared.keys.local import LocalKeyring

        keys = LocalKeyring(self.data_dir / "export-keyring.json")
        tenant = json.loads(encryption)["WrappedContentKey"]["KeyId"].removeprefix("local:").rsplit("/", 1)[0]
        plain = b"".join(cse.decrypt([content], encryption, resolver(keys, tenant)))
        if plain.startswith(b"\x1f\x8b"):  # gzip NDJSON (the ndjson format under the same encryption)
            return gzip.decompress(plain)
        if not plain.startswith(b"PAR1"):
            return plain
        rows = pq.read_table(pa.BufferReader(plain)).to_pylist()
        return json.dumps(rows, default=str, ensure_ascii=False).encode()

    def _export_plaintext(self, path: Path) -> bytes:
        assert self.keys is not None, "an export file was found: give ErasureScan the folder's key provider"
        header, _, _ = read_header(iter([path.read_bytes()]))
        plain = b"".join(decrypt_stream(self.keys, [path.read_bytes()], tenant_id=header["tenantId"]))
        try:
            return gzip.decompress(plain)
        except (OSError, zlib.error):
            return plain

    def findings(self, needles: Needles, texts: Mapping[str, bytes | str] | None = None) -> list[str]:
        found = []
        places = self.places(texts)
        for label, value in needles.values.items():
            for form, needle in forms_of(value).items():
                for where, content in places.items():
                    if needle in content:
                        found.append(f"{label} as {form} in {where}")
        return found

    def assert_clean(self, needles: Needles, texts: Mapping[str, bytes | str] | None = None) -> None:
        found = self.findings(needles, texts)
        assert not found, "personal data or its key survived the erasure:\n  " + "\n  ".join(found)
