"""``python -m shared.exports``: the warehouse side (decrypt) and on-demand runs.

    python -m shared.exports decrypt --manifest DIR/manifest.json --out OUTDIR
        every file the manifest lists (read next to the manifest), ciphertext and
        plaintext SHA-256 checked against the manifest, written as
        NDJSON as OUTDIR/<subject>.ndjson.gz (a subject in parts: OUTDIR/<subject>.partNNNN.ndjson.gz
        from part 2 on, as the files are named), Parquet as OUTDIR/subject=<s>/date=<d>/<file>.
        Files under Azure client-side encryption v2 (the tenant's export key: every file
        written now, either format) are checked by plaintext SHA-256; NDJSON files of
        earlier runs (ACRXENC1, the tenant's key) by ciphertext and plaintext SHA-256.
        Exit 1 on any mismatch or tampering.
    python -m shared.exports decrypt --file F --tenant T --subject S --run R --out OUT
        one ACRXENC1 file (earlier NDJSON runs), checked against the tenant, subject and
        run it must belong to; a client-side-encrypted file is decrypted by --manifest
        (its key is in the folder's metadata sidecar) or by Microsoft's SDK.
    python -m shared.exports run [--tenant T]           incremental run (all tenants without --tenant)
    python -m shared.exports backfill --tenant T --from ISO --to ISO [--subject S ...]

The key provider comes from the same settings as the platform (``ACCRUE_KEYS``,
``ACCRUE_DATA_DIR`` for the local keyring, ``KEYVAULT_URI`` for Key Vault): the
warehouse's identity needs unwrap permission on the tenant's key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Iterator

from shared.domain.inputs import InputError, parse_instant
from shared.blobs.cse import ClientDecryptError
from shared.exports.crypto import ExportDecryptError, decrypt_stream
from shared.exports.service import ENCRYPTION_CSE
from shared.settings import Settings


def _read(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def _hashing(chunks: Iterator[bytes], digest) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def decrypt_file(keys, source: Path, out: Path, *, tenant: str, subject: str | None, run: str | None,  # type: ignore[no-untyped-def]
                 ciphertext_sha256: str | None = None, plaintext_sha256: str | None = None) -> int:
    cipher_digest, plain_digest = hashlib.sha256(), hashlib.sha256()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".partial-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in decrypt_stream(keys, _hashing(_read(source), cipher_digest), tenant_id=tenant,
                                        subject=subject, run_id=run):
                plain_digest.update(chunk)
                handle.write(chunk)
                size += len(chunk)
        if ciphertext_sha256 and cipher_digest.hexdigest() != ciphertext_sha256:
            raise ExportDecryptError(f"{source.name}: ciphertext SHA-256 differs from the manifest")
        if plaintext_sha256 and plain_digest.hexdigest() != plaintext_sha256:
            raise ExportDecryptError(f"{source.name}: plaintext SHA-256 differs from the manifest")
        os.replace(tmp, out)  # only a verified file appears under its name
        tmp = ""
        return size
    finally:
        if tmp:
            os.unlink(tmp)


def decrypt_cse(export_keys, manifest_path: Path, manifest: dict, entry: dict, out: Path) -> int:  # type: ignore[no-untyped-def]
    """One file of a local export folder under Azure client-side encryption v2 (Parquet, or
    gzip NDJSON written since NDJSON uses it too; its ``encryptiondata`` in the folder's
    metadata sidecar), checked against the manifest."""
    from shared.blobs.local import LocalBlobSink
    from shared.exports.keys import resolver

    # <root>/<tenant>/<incremental|backfill>/<runId>/manifest.json
    root = manifest_path.resolve().parents[3]
    digest = hashlib.sha256()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".partial-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in LocalBlobSink(root).open(entry["path"], resolver(export_keys, manifest["tenantId"])):
                digest.update(chunk)
                handle.write(chunk)
                size += len(chunk)
        if digest.hexdigest() != entry["plaintextSha256"]:
            raise ExportDecryptError(f"{entry['path']}: plaintext SHA-256 differs from the manifest")
        os.replace(tmp, out)
        tmp = ""
        return size
    finally:
        if tmp:
            os.unlink(tmp)


def _instant(text: str) -> datetime:
    """--from/--to: the API's one form of an instant (RFC 3339 with an offset; docs/input.md)."""
    try:
        return parse_instant(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(f"{text!r} {error}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.exports", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    dec = commands.add_parser("decrypt", help="decrypt an export run (by its manifest) or one file")
    dec.add_argument("--manifest", type=Path)
    dec.add_argument("--file", type=Path)
    dec.add_argument("--tenant")
    dec.add_argument("--subject")
    dec.add_argument("--run")
    dec.add_argument("--out", type=Path, required=True)
    run = commands.add_parser("run", help="run the incremental export now")
    run.add_argument("--tenant")
    back = commands.add_parser("backfill", help="export a date range under its own prefix")
    back.add_argument("--tenant", required=True)
    back.add_argument("--from", dest="start", required=True, type=_instant)
    back.add_argument("--to", dest="end", required=True, type=_instant)
    back.add_argument("--subject", action="append")
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    if args.command == "decrypt":
        from shared.keys import build_key_provider

        keys = build_key_provider(settings)
        try:
            if args.manifest:
                manifest = json.loads(args.manifest.read_text(encoding="utf-8"))
                if any(entry.get("encryption") == ENCRYPTION_CSE for entry in manifest["files"]):
                    from shared.keys.factory import build_export_key_provider

                    export_keys = build_export_key_provider(settings)
                for entry in manifest["files"]:
                    part = entry.get("part", 1)
                    ndjson = args.out / (entry["subject"] + (f".part{part:04d}" if part > 1 else "") + ".ndjson.gz")
                    if entry.get("encryption") == ENCRYPTION_CSE:
                        target = (args.out / Path(*Path(entry["path"]).parts[-3:]) if entry.get("format") == "parquet"
                                  else ndjson)
                        size = decrypt_cse(export_keys, args.manifest, manifest, entry, target)
                        print(f"{entry['subject']}: {entry['rows']} rows, {size} bytes -> {target}")
                        continue
                    # An NDJSON file written before NDJSON used client-side encryption (ACRXENC1).
                    source = args.manifest.parent / Path(entry["path"]).name
                    target = ndjson
                    size = decrypt_file(keys, source, target, tenant=manifest["tenantId"], subject=entry["subject"],
                                        run=manifest["runId"], ciphertext_sha256=entry["ciphertextSha256"],
                                        plaintext_sha256=entry["plaintextSha256"])
                    print(f"{entry['subject']}: {entry['rows']} rows, {size} bytes -> {target}")
            elif args.file and args.tenant:
                size = decrypt_file(keys, args.file, args.out, tenant=args.tenant, subject=args.subject,
                                    run=args.run)
                print(f"{size} bytes -> {args.out}")
            else:
                parser.error("decrypt needs --manifest, or --file with --tenant (and --subject/--run to check)")
        except (ExportDecryptError, ClientDecryptError) as exc:
            print(f"refused: {exc.message}", file=sys.stderr)
            return 1
        return 0

    from shared.platform import build_platform

    platform = build_platform(settings)
    try:
        if args.command == "run":
            result = platform.exports.run(args.tenant) if args.tenant else platform.exports.run_all()
        else:
            result = platform.exports.backfill(args.tenant, args.start, args.end, args.subject)
        print(json.dumps(result, indent=2))
    finally:
        platform.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
