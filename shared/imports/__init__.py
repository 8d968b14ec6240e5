"""Bulk awards and historical imports (issue 20): row kinds (``rows``), file formats
(``formats``) and the resumable import job (``service``). See docs/imports.md."""
