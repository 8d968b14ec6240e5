"""The blob-sink port and its adapters (a local folder, Azure Blob Storage)."""

from shared.blobs.port import (
    BlobExists,
    BlobInfo,
    BlobNotFound,
    BlobSink,
    BlobSinkError,
    BlobUnavailable,
    InvalidBlobPath,
)

__all__ = [
    "BlobExists",
    "BlobInfo",
    "BlobNotFound",
    "BlobSink",
    "BlobSinkError",
    "BlobUnavailable",
    "InvalidBlobPath",
]
