"""The Azure Blob Storage adapter of the blob-sink port (``azure-storage-blob``).

One sink is one container (Bicep creates ``exports`` and ``audit``; the
identity's role is scoped to each). What it guarantees on top of the port:

* streaming with bounded memory: chunks are re-cut into blocks of
  ``block_bytes`` and staged one by one (``stage_block``); only the final
  ``commit_block_list`` makes the blob visible, all at once, so a reader never
  sees half a blob and an interrupted upload leaves nothing (Blob Storage drops
  uncommitted blocks by itself);
* no overwrite unless asked: the commit carries ``If-None-Match: *``, so two
  racing writers cannot both win even if they both passed the early check;
* downloads are streamed chunk by chunk (``download_blob().chunks()``);
* SDK errors become the port's typed errors (``BlobNotFound``, ``BlobExists``,
  ``BlobUnavailable`` for connection failures, timeouts, throttling and 5xx
  that outlasted the SDK's retries, ``BlobSinkError`` otherwise);
* a wrong endpoint, a missing container or an identity without access fails
  at construction with a ``ConfigurationError`` naming ``BLOB_ACCOUNT_URL``.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Mapping

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient, ContentSettings

from shared.blobs.cse import KeyEncryptionKey, KeyResolver
from shared.blobs.port import (
    DEFAULT_CONTENT_TYPE,
    BlobExists,
    BlobInfo,
    BlobNotFound,
    BlobSinkError,
    BlobUnavailable,
    Chunks,
    check_content_type,
    check_metadata,
    check_path,
    check_prefix,
    iter_chunks,
)
from shared.errors import ConfigurationError
from shared.telemetry import tracing

DEFAULT_BLOCK_BYTES = 4 * 1024 * 1024
_UNAVAILABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class AzureBlobSink:
    """The blob-sink port over one Blob Storage container."""

    def __init__(
        self,
        container: str,
        *,
        account_url: str | None = None,
        credential: Any = None,
        connection_string: str | None = None,
        create_container: bool = False,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
    ) -> None:
        """Open ``container`` and check that it exists.

        Give ``account_url`` with a ``credential`` (``DefaultAzureCredential``
        on Azure: the managed identity; a key or SAS for tests), or a
        ``connection_string`` (Azurite). ``create_container`` is for tests and
        local runs; on Azure, Bicep creates containers with their policies.
        """
        if not 64 * 1024 <= block_bytes <= 100 * 1024 * 1024:
            raise ValueError("block_bytes must be between 64 KiB and 100 MiB")
        self._block_bytes = block_bytes
        where = account_url or "the connection string's BlobEndpoint"
        try:
            if connection_string is not None:
                service = BlobServiceClient.from_connection_string(connection_string)
            elif account_url:
                service = BlobServiceClient(account_url, credential=credential)
            else:
                raise ConfigurationError("BLOB_ACCOUNT_URL is not set: the Azure blob sink needs the account URL")
        except ValueError as exc:
            raise ConfigurationError(f"BLOB_ACCOUNT_URL={account_url!r} is not a valid account URL: {exc}") from exc
        self._service = service
        self._container: ContainerClient = service.get_container_client(container)
        self.container = container
        try:
            # No retries at start: a wrong endpoint should fail at once, not after
            # the SDK's minute and a half of back-off (the host restarts us).
            if create_container:
                try:
                    self._container.create_container(retry_total=0)
                except ResourceExistsError:
                    pass
            else:
                self._container.get_container_properties(retry_total=0)
        except ResourceNotFoundError as exc:
            raise ConfigurationError(
                f"blob container {container!r} does not exist at BLOB_ACCOUNT_URL={where!r}: deploy the templates"
            ) from exc
        except ClientAuthenticationError as exc:
            raise ConfigurationError(
                f"the identity may not open blob container {container!r} at BLOB_ACCOUNT_URL={where!r}: "
                f"grant it Storage Blob Data Contributor on the container ({_short(exc)})"
            ) from exc
        except (HttpResponseError, AzureError) as exc:
            raise ConfigurationError(f"cannot reach Blob Storage at BLOB_ACCOUNT_URL={where!r}: {_short(exc)}") from exc

    def close(self) -> None:
        self._service.close()

    # --- writes ----------------------------------------------------------------------

    @tracing.traced("blob put", tracing.CLIENT)
    def put(
        self,
        path: str,
        chunks: Chunks,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
        kek: KeyEncryptionKey | None = None,
    ) -> BlobInfo:
        check_path(path)
        settings = ContentSettings(content_type=check_content_type(content_type))
        meta = check_metadata(metadata)
        blob = self._container.get_blob_client(path)
        if not overwrite and self.exists(path):
            raise BlobExists(f"blob {path!r} already exists")  # fail before streaming it all
        if kek is not None:
            return self._put_encrypted(path, chunks, settings, meta, overwrite, kek)
        # Only the final request decides: If-None-Match: * when not overwriting.
        condition: dict[str, Any] = {} if overwrite else {"match_condition": MatchConditions.IfMissing}
        try:
            # Always staged blocks and one conditional commit, even for a blob of
            # one block: a single Put Blob with If-None-Match: * is refused where
            # a failed earlier attempt left uncommitted blocks (Azurite does),
            # which would make a retry after a crash impossible.
            block_ids: list[str] = []
            size = 0
            for block in self._blocks(chunks):
                block_id = _block_id(len(block_ids))
                blob.stage_block(block_id, block, length=len(block))
                block_ids.append(block_id)
                size += len(block)
            blob.commit_block_list(
                [BlobBlock(block_id=b) for b in block_ids], content_settings=settings, metadata=meta, **condition
            )
            return BlobInfo(path, size, settings.content_type, meta)
        except (ResourceExistsError, ResourceModifiedError) as exc:
            if overwrite:
                raise _translate(exc, f"writing blob {path!r}") from exc
            raise BlobExists(f"blob {path!r} already exists") from exc
        except AzureError as exc:
            raise _translate(exc, f"writing blob {path!r}") from exc

    def _put_encrypted(self, path: str, chunks: Chunks, settings: ContentSettings, meta: dict[str, str],
                       overwrite: bool, kek: KeyEncryptionKey) -> BlobInfo:
        """The SDK's own client-side encryption v2.0 (``require_encryption``, ``encryption_version
        '2.0'``): the SDK encrypts 4 MiB regions as it stages blocks and commits once
        (``If-None-Match: *`` unless ``overwrite``), so the blob is what any SDK decrypts."""
        blob = self._container.get_blob_client(path)
        blob.require_encryption = True
        blob.encryption_version = "2.0"
        blob.key_encryption_key = kek
        reader = _ChunkReader(iter_chunks(chunks))
        try:
            blob.upload_blob(reader, overwrite=overwrite, metadata=meta, content_settings=settings)
        except (ResourceExistsError, ResourceModifiedError) as exc:
            if overwrite:
                raise _translate(exc, f"writing blob {path!r}") from exc
            raise BlobExists(f"blob {path!r} already exists") from exc
        except AzureError as exc:
            raise _translate(exc, f"writing blob {path!r}") from exc
        return BlobInfo(path, reader.size, settings.content_type, meta)

    def _blocks(self, chunks: Chunks) -> Iterator[bytes]:
        """Re-cut arbitrary chunks into blocks of exactly ``block_bytes`` (the last may be short).

        At most one block plus one incoming chunk is held in memory.
        """
        buffer = bytearray()
        for chunk in iter_chunks(chunks):
            buffer += chunk
            while len(buffer) >= self._block_bytes:
                yield bytes(buffer[: self._block_bytes])
                del buffer[: self._block_bytes]
        if buffer:
            yield bytes(buffer)

    # --- reads -----------------------------------------------------------------------

    @tracing.traced("blob open", tracing.CLIENT)
    def open(self, path: str, resolver: KeyResolver | None = None) -> Iterator[bytes]:
        check_path(path)
        try:
            blob = self._container.get_blob_client(path)
            if resolver is not None:
                # The SDK decrypts a client-side-encrypted blob itself (and passes others through).
                blob.key_resolver_function = resolver
            downloader = blob.download_blob()
        except ResourceNotFoundError as exc:
            raise BlobNotFound(f"blob {path!r} not found") from exc
        except AzureError as exc:
            raise _translate(exc, f"reading blob {path!r}") from exc
        return _chunks(downloader, path)

    def open_from(self, path: str, offset: int) -> Iterator[bytes]:
        """The blob's bytes from ``offset`` on: a ranged download (an import resumes mid-file)."""
        check_path(path)
        assert offset >= 0
        try:
            downloader = self._container.get_blob_client(path).download_blob(offset=offset)
        except ResourceNotFoundError as exc:
            raise BlobNotFound(f"blob {path!r} not found") from exc
        except HttpResponseError as exc:
            if exc.status_code == 416:  # the offset is the blob's end: nothing left
                return iter(())
            raise _translate(exc, f"reading blob {path!r}") from exc
        except AzureError as exc:
            raise _translate(exc, f"reading blob {path!r}") from exc
        return _chunks(downloader, path)

    def upload_url(self, path: str, expires_in: timedelta) -> str:
        """A short-lived URL that lets its holder create this one blob and nothing else: a
        user-delegation SAS (the identity's own key, never the account key) with create and
        write permission on ``path`` only, valid for ``expires_in`` (at most one hour)."""
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas  # noqa: PLC0415

        check_path(path)
        assert timedelta(0) < expires_in <= timedelta(hours=1)
        start = datetime.now(timezone.utc) - timedelta(minutes=5)  # clock skew of the uploader
        expiry = datetime.now(timezone.utc) + expires_in
        blob = self._container.get_blob_client(path)
        try:
            key = self._service.get_user_delegation_key(start, expiry)
        except AzureError as exc:
            raise _translate(exc, "issuing an upload SAS") from exc
        sas = generate_blob_sas(account_name=blob.account_name, container_name=blob.container_name,
                                blob_name=path, user_delegation_key=key,
                                permission=BlobSasPermissions(create=True, write=True),
                                start=start, expiry=expiry, protocol="https")
        return f"{blob.url}?{sas}"

    def read(self, path: str) -> bytes:
        return b"".join(self.open(path))

    @tracing.traced("blob exists", tracing.CLIENT)
    def exists(self, path: str) -> bool:
        check_path(path)
        try:
            return bool(self._container.get_blob_client(path).exists())
        except AzureError as exc:
            raise _translate(exc, f"checking blob {path!r}") from exc

    @tracing.traced("blob discard", tracing.CLIENT)
    def discard(self, path: str) -> None:
        check_path(path)
        try:
            self._container.get_blob_client(path).delete_blob(delete_snapshots="include")
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _translate(exc, f"discarding blob {path!r}") from exc

    @tracing.traced("blob list", tracing.CLIENT)
    def list(self, prefix: str = "") -> list[BlobInfo]:
        check_prefix(prefix)
        try:
            found = [
                BlobInfo(
                    path=props.name,
                    size=props.size,
                    content_type=(props.content_settings.content_type or DEFAULT_CONTENT_TYPE),
                    metadata={k.lower(): v for k, v in (props.metadata or {}).items()},
                    last_modified=props.last_modified,
                )
                for props in self._container.list_blobs(name_starts_with=prefix or None, include=["metadata"])
            ]
        except AzureError as exc:
            raise _translate(exc, f"listing blobs under {prefix!r}") from exc
        return sorted(found, key=lambda info: info.path)


class _ChunkReader(io.RawIOBase):
    """Chunks as the non-seekable file object the SDK's encrypting upload reads from."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.size = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            if not self._buffer:
                self._buffer = next(self._chunks, b"")
                if not self._buffer:
                    break
            take = len(self._buffer) if size < 0 else min(size - len(out), len(self._buffer))
            out += self._buffer[:take]
            self._buffer = self._buffer[take:]
        self.size += len(out)
        return bytes(out)

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[:len(data)] = data
        return len(data)


def _chunks(downloader: Any, path: str) -> Iterator[bytes]:
    try:
        for chunk in downloader.chunks():
            if chunk:
                yield chunk
    except AzureError as exc:
        raise _translate(exc, f"reading blob {path!r}") from exc


def _block_id(index: int) -> str:
    # Every block id of a blob must have the same length: fixed-width numbers.
    return base64.b64encode(f"block-{index:08d}".encode()).decode()


def _translate(exc: AzureError, what: str) -> BlobSinkError:
    if isinstance(exc, ResourceNotFoundError):
        return BlobNotFound(f"{what}: not found")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return BlobUnavailable(f"{what}: cannot reach Blob Storage: {_short(exc)}")
    status = getattr(exc, "status_code", None)
    if status in _UNAVAILABLE_STATUSES:
        return BlobUnavailable(f"{what}: Blob Storage is unavailable ({status}): {_short(exc)}")
    if isinstance(exc, HttpResponseError):
        return BlobSinkError(f"{what}: Blob Storage refused the request ({status}): {_short(exc)}")
    return BlobUnavailable(f"{what}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
