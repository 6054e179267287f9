"""Bodies a route reads itself, bounded as they arrive (an uploaded CSV: ``text/csv`` only, at
most ``MAX_IMPORT_BYTES``), and CSV downloads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.responses import StreamingResponse

from server.commands.csv_import import MAX_IMPORT_BYTES

CSV_MEDIA_TYPE = "text/csv"
CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
        "description": f"UTF-8 CSV with a header row, at most {MAX_IMPORT_BYTES} bytes.",
    }
}
"""OpenAPI description of the body the import routes read themselves."""


async def read_body(
    request: Request, *, media_types: Collection[str], limit: int, wrong_type: str, what: str
) -> bytes:
    """The request body, of one of ``media_types`` and at most ``limit`` bytes.

    Raises:
        HTTPException: 415 saying ``wrong_type`` for another media type; 413 ("the ``what``
            is larger than ...") when the declared length or the bytes received pass
            ``limit``.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in media_types:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, wrong_type)
    too_large = f"the {what} is larger than {limit} bytes"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, too_large)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        # Counted as it arrives, so a body without (or lying about) Content-Length is bounded.
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, too_large)
    return bytes(body)


async def read_upload(request: Request) -> bytes:
    """The request body, refused with 415 unless text/csv and 413 past the size limit."""
    return await read_body(
        request,
        media_types=(CSV_MEDIA_TYPE, "text/plain"),
        limit=MAX_IMPORT_BYTES,
        wrong_type="send the file as the request body with Content-Type: text/csv",
        what="file",
    )


CSV_IMPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "The file is too large."},
    415: {"description": "Not sent as text/csv."},
    422: {"description": "Errors by row and field; nothing was applied."},
}
"""The refusals every CSV import route documents."""


def csv_download(
    chunks: AsyncIterator[str] | AsyncIterator[bytes], filename: str
) -> StreamingResponse:
    """A CSV export streamed as a file download."""
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
