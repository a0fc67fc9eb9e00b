"""``/v1/documents``: upload (files or JSON text, in batches), list and delete a tenant's documents.

Admins (and operators, for the tenant they name) only. A batch reports one
outcome per document, in request order: ``ok``, ``unchanged`` or ``failed``
with a stable reason code; a bad file fails alone and the answer is 207.
Ingestion runs in the thread pool, never on the event loop; it is
idempotent per document, so a client may simply resend a batch.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from fathom.ingest.document import ReasonCode
from fathom.ingest.indexer import LayoutMismatch
from fathom.ingest.ingest_pipeline import IngestItem, IngestReport
from fathom.ingest.registry import DocumentRecord
from fathom.retrieval.identifiers import document_id_problem, validate_tags
from fathom.retrieval.store.contract import StoreUnavailable
from fathom.service.api.deps import Caller, admin_caller, runtime
from fathom.service.api.documents_schemas import (
    TEXT_EXAMPLE,
    DocumentList,
    DocumentOut,
    DocumentOutcomeOut,
    IngestResponse,
    TextDocumentsRequest,
)
from fathom.service.api.openapi import inline_schema
from fathom.service.problems import TOO_DEEP, Problem
from fathom.service.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["documents"])

DUPLICATE = "duplicate_in_batch"
INVALID_ID = "invalid_document_id"

_MULTIPART_SCHEMA = {
    "type": "object", "required": ["files"],
    "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "One or more files (PDF, DOCX, HTML, Markdown, e-mail, ...)"},
        "document_ids": {"type": "array", "items": {"type": "string"},
                         "description": "Optional ids, one per file in order; default: the file name"},
        "tags": {"type": "string", "description": 'Optional JSON object applied to every file, e.g. {"team": "hr"}'},
    },
}


def _safe_filename(name: str | None) -> str | None:
    """The last path component of an uploaded file's name, without control characters: what a client's
    directories (or a traversal attempt like ``../../etc/passwd``) become in ``source`` metadata. Only its
    extension is ever used to pick a parser; nothing is written to disk under it. Control and format characters
    (bidi overrides, zero-width) are dropped: the name is shown to people and put into prompts."""
    if not name:
        return None
    visible = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    base = re.split(r"[\\/]", visible)[-1].strip()
    return None if base in ("", ".", "..") else base


class _Batch:
    """The submitted documents in request order: items to ingest, and failures decided at the edge."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.order: list[str] = []
        self.items: list[IngestItem] = []
        self.rejected: dict[int, DocumentOutcomeOut] = {}
        self._seen: set[str] = set()

    def add(self, document_id: str, size: int, make: Callable[[], IngestItem]) -> None:
        """Queue a document (``make()`` builds its IngestItem) unless it fails before ingestion."""
        index = len(self.order)
        self.order.append(document_id)
        problem = document_id_problem(document_id)
        if problem:
            self.rejected[index] = DocumentOutcomeOut(id=document_id, status="failed", reason=INVALID_ID, error=problem)
        elif document_id in self._seen:
            self.rejected[index] = DocumentOutcomeOut(id=document_id, status="failed", reason=DUPLICATE,
                                                      error="this id appears earlier in the same request")
        elif size > self.max_bytes:
            self.rejected[index] = DocumentOutcomeOut(id=document_id, status="failed", reason=ReasonCode.TOO_LARGE.value,
                                                      error=f"{size} bytes; at most {self.max_bytes} per document")
        else:
            self._seen.add(document_id)
            try:
                self.items.append(make())
            except ValueError as exc:   # IngestItem's own checks
                self.rejected[index] = DocumentOutcomeOut(id=document_id, status="failed", reason="invalid_input",
                                                          error=str(exc))

    def outcomes(self, report: IngestReport) -> list[DocumentOutcomeOut]:
        by_id = {o.document_id: o for o in report.outcomes}
        out = []
        for i, document_id in enumerate(self.order):
            if i in self.rejected:
                out.append(self.rejected[i])
                continue
            o = by_id[document_id]
            out.append(DocumentOutcomeOut(id=o.document_id, status=o.status, reason=o.reason,  # type: ignore[arg-type]
                                          error=o.error, chunks=o.chunks, doc_version=o.doc_version))
        return out


async def _from_json(request: Request, batch: _Batch) -> None:
    try:
        body = TextDocumentsRequest.model_validate(await request.json())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
    except UnicodeDecodeError as exc:
        raise Problem(400, "invalid_json", "The body is not valid JSON",
                      f"the body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise Problem(400, "invalid_json", "The body is not valid JSON", str(exc)) from None
    except RecursionError:
        raise Problem(400, "invalid_json", "The body is not valid JSON", TOO_DEEP) from None
    _check_count(len(body.documents), request)
    for d in body.documents:
        batch.add(d.id, len(d.text.encode("utf-8")), lambda d=d: IngestItem(
            document_id=d.id, text=d.text, title=d.title, tags=dict(d.tags), filename=None))


async def _from_multipart(request: Request, batch: _Batch, limit: int) -> None:
    try:
        async with request.form(max_files=limit + 1, max_fields=limit + 2) as form:   # closing spools the temp files
            files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
            if not files:
                raise Problem(422, "no_files", "No files", "send one or more files in the 'files' field")
            _check_count(len(files), request)
            ids = [str(v) for v in form.getlist("document_ids")]
            if ids and len(ids) != len(files):
                raise Problem(422, "document_ids_mismatch", "document_ids does not match files",
                              f"{len(ids)} ids for {len(files)} files; give one per file, in order, or none")
            tags = _form_tags(form.get("tags"))
            for n, upload in enumerate(files):
                document_id = ids[n] if ids else (upload.filename or f"upload-{n + 1}")
                data = await upload.read(batch.max_bytes + 1)   # past the limit, one byte more is enough to know
                size = upload.size if upload.size is not None else len(data)
                batch.add(document_id, size, lambda u=upload, d=data, doc_id=document_id: IngestItem(
                    document_id=doc_id, data=d, filename=_safe_filename(u.filename) or _safe_filename(doc_id) or "upload",
                    content_type=u.content_type, tags=tags))
    except (MultiPartException, StarletteHTTPException) as exc:
        # Starlette reports its own limits as a 400 HTTPException (inside an app) or a MultiPartException.
        if isinstance(exc, StarletteHTTPException) and exc.status_code != 400:
            raise          # e.g. the body limit's 413
        message = exc.message if isinstance(exc, MultiPartException) else str(exc.detail)
        if message.startswith(("Too many files", "Too many fields")):
            raise Problem(413, "too_many_documents", "Too many documents",
                          f"more than {limit} files (or fields) in one request; at most {limit} documents",
                          limit=limit) from None
        raise Problem(400, "invalid_multipart", "The multipart body could not be read", message) from None


def _form_tags(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        tags = json.loads(str(raw))
    except json.JSONDecodeError:
        tags = None
    if not isinstance(tags, dict):
        raise Problem(422, "invalid_tags", "Invalid tags", 'tags must be a JSON object, e.g. {"team": "hr"}')
    try:
        validate_tags(tags)      # the same tags go on every file: one bad key is the request's fault, not a file's
    except ValueError as exc:
        raise Problem(422, "invalid_tags", "Invalid tags", str(exc)) from None
    return tags


def _check_count(n: int, request: Request) -> None:
    limit = request.app.state.runtime.settings.ingest.max_batch_documents
    if n > limit:
        raise Problem(413, "too_many_documents", "Too many documents", f"{n} documents; at most {limit} per request",
                      limit=limit)


@router.post(
    "/documents", response_model=IngestResponse,
    summary="Ingest documents (file upload or JSON text)",
    responses={207: {"model": IngestResponse, "description": "Some documents failed; each outcome says why"},
               409: {"description": "The tenant's index needs vectors this deployment does not make "
                                   "(problem+json, code index_layout_mismatch): reindex, or load the model"},
               413: {"description": "Too many documents, or the body is too large (problem+json)"},
               415: {"description": "Neither multipart/form-data nor application/json (problem+json)"}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": inline_schema(TextDocumentsRequest), "examples": {"text": {"value": TEXT_EXAMPLE}}},
        "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
    }}},
)
async def ingest_documents(request: Request, caller: Annotated[Caller, Depends(admin_caller)],
                           rt: Annotated[Runtime, Depends(runtime)]) -> JSONResponse:
    """Ingest a batch into the caller's tenant: files (multipart ``files``) or texts (JSON ``documents``).

    Re-sending an unchanged document is cheap and reports ``unchanged``; a
    changed one replaces the old version atomically for readers. The answer
    is 200 when every document is ``ok`` or ``unchanged``, 207 otherwise.
    """
    settings = rt.settings.ingest
    batch = _Batch(settings.max_document_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        await _from_json(request, batch)
    elif content_type == "multipart/form-data":
        await _from_multipart(request, batch, settings.max_batch_documents)
    else:
        raise Problem(415, "unsupported_media_type", "Unsupported media type",
                      "send multipart/form-data (files) or application/json (texts)")
    try:
        report = await run_in_threadpool(rt.ingest.ingest, caller.tenant, batch.items)
    except StoreUnavailable as exc:
        raise Problem(503, "store_unavailable", "The index store is unavailable", str(exc).split(":")[0],
                      headers={"Retry-After": "5"}) from None
    except LayoutMismatch as exc:
        raise Problem(409, "index_layout_mismatch", "The tenant's index does not fit this deployment", str(exc)) from None
    outcomes = batch.outcomes(report)
    summary = {s: sum(1 for o in outcomes if o.status == s) for s in ("ok", "unchanged", "failed")}
    body = IngestResponse(documents=outcomes, summary=summary, index_version=rt.store.live_version(caller.tenant))
    return JSONResponse(body.model_dump(), status_code=207 if summary["failed"] else 200)


def _encode_cursor(document_id: str) -> str:
    return base64.urlsafe_b64encode(document_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except ValueError:   # binascii.Error, UnicodeDecodeError, and non-ASCII input (found by schemathesis: was a 500)
        raise Problem(422, "invalid_cursor", "Invalid cursor", "pass back next_cursor as it was returned") from None


def _document(rec: DocumentRecord) -> DocumentOut:
    return DocumentOut(id=rec.document_id, status=rec.status, reason=rec.reason, error=rec.error,  # type: ignore[arg-type]
                       doc_version=rec.doc_version, chunk_count=rec.chunk_count, title=rec.title,
                       source_name=rec.source_name, filetype=rec.filetype, language=rec.language, tags=rec.tags,
                       size_bytes=rec.size_bytes, created_at=rec.created_at, updated_at=rec.updated_at)


@router.get("/documents", response_model=DocumentList, summary="List the tenant's documents")
def list_documents(caller: Annotated[Caller, Depends(admin_caller)], rt: Annotated[Runtime, Depends(runtime)],
                   status: Annotated[str | None, Query(pattern="^(ok|failed)$")] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100,
                   cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None) -> DocumentList:
    """Documents in id order, with status, failure reason, chunk count and version."""
    after = _decode_cursor(cursor) if cursor else None
    records = rt.registry.list(caller.tenant, status=status, limit=limit + 1, after=after)
    more = len(records) > limit
    records = records[:limit]
    return DocumentList(documents=[_document(r) for r in records],
                        next_cursor=_encode_cursor(records[-1].document_id) if more else None,
                        index_version=rt.store.live_version(caller.tenant), counts=rt.registry.counts(caller.tenant))


@router.delete("/documents/{document_id:path}", status_code=204, response_class=Response,
               summary="Delete a document (its chunks and its record)",
               responses={404: {"description": "Unknown document (problem+json, code document_not_found)"}})
def delete_document(document_id: str, caller: Annotated[Caller, Depends(admin_caller)],
                    rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    """Ids may contain ``/`` (``DELETE /v1/documents/reports/2024/q3.pdf``); percent-encoding works too."""
    try:
        found = rt.ingest.delete(caller.tenant, document_id)
    except StoreUnavailable as exc:
        raise Problem(503, "store_unavailable", "The index store is unavailable", str(exc).split(":")[0],
                      headers={"Retry-After": "5"}) from None
    if not found:
        raise Problem(404, "document_not_found", "Document not found", f"no document {document_id!r} in this tenant")
    return Response(status_code=204)
