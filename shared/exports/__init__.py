"""Nightly encrypted warehouse exports (CDC feeds): ``ExportService`` (on
``Platform.exports``), the ``ACRXENC1`` file format (``shared.exports.crypto``)
and the warehouse-side ``python -m shared.exports decrypt`` command. See
``docs/exports.md``."""

from shared.exports.crypto import ExportDecryptError, decrypt_stream, encrypt_stream
from shared.exports.service import SUBJECTS, ExportService

__all__ = ["ExportDecryptError", "ExportService", "SUBJECTS", "decrypt_stream", "encrypt_stream"]
