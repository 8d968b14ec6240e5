"""Encrypted warehouse exports (CDC feeds, micro-batches and nightly compaction):
``ExportService`` (on ``Platform.exports``), Parquet and gzip NDJSON files under Azure
Storage client-side encryption v2 (``shared.blobs.cse``), the ``ACRXENC1`` format of
NDJSON files written before, still read (``shared.exports.crypto``), and the
warehouse-side ``python -m shared.exports decrypt`` command. See ``docs/exports.md``."""

from shared.exports.crypto import ExportDecryptError, decrypt_stream, encrypt_stream
from shared.exports.service import SUBJECTS, ExportService

__all__ = ["ExportDecryptError", "ExportService", "SUBJECTS", "decrypt_stream", "encrypt_stream"]
