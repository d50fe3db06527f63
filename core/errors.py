"""The error tree every layer raises from.

One root, :class:`CollabError`, and a few category bases that the edges (HTTP,
WebSocket) map to a status or close code. Each concrete class carries a stable
``code`` and its structured fields, so a client can act on an error without
parsing its message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class CollabError(Exception):
    """Root of every error this service raises on purpose."""

    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields: dict[str, Any] = fields


# --- categories -----------------------------------------------------------------------------


class InvalidInput(CollabError):
    code = "invalid_input"
    title = "Invalid input"


class TooLarge(InvalidInput):
    code = "too_large"
    title = "Payload too large"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"
    title = "Unsupported media type"


class PreconditionRequired(InvalidInput):
    code = "precondition_required"
    title = "Precondition required"


class Unauthenticated(CollabError):
    code = "unauthenticated"
    title = "Unauthenticated"


class PermissionDenied(CollabError):
    code = "permission_denied"
    title = "Permission denied"


class NotFound(CollabError):
    code = "not_found"
    title = "Not found"


class Conflict(CollabError):
    code = "conflict"
    title = "Conflict"


class Unavailable(CollabError):
    """A dependency is down or overloaded; the same request may succeed later."""

    code = "unavailable"
    title = "Service unavailable"


class RateLimited(CollabError):
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail, retryAfter=retry_after_s)
        self.retry_after_s = retry_after_s


# --- concrete errors ------------------------------------------------------------------------


class DiagramNotFound(NotFound):
    code = "diagram_not_found"
    title = "Diagram not found"

    def __init__(self, diagram_id: str) -> None:
        super().__init__(f"no diagram {diagram_id!r}", diagramId=diagram_id)


class VersionNotFound(NotFound):
    code = "version_not_found"
    title = "Version not found"

    def __init__(self, diagram_id: str, rev: int) -> None:
        super().__init__(
            f"diagram {diagram_id!r} has no version {rev}", diagramId=diagram_id, rev=rev
        )


class BlobNotFound(NotFound):
    code = "blob_not_found"
    title = "Stored content not found"

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob {key!r}", key=key)


class VersionConflict(Conflict):
    code = "version_conflict"
    title = "Version conflict"

    def __init__(self, *, current_version: int, expected_version: int) -> None:
        super().__init__(
            f"the diagram is at version {current_version}, not {expected_version}; "
            "fetch it, merge your change and save again",
            currentVersion=current_version,
            expectedVersion=expected_version,
        )
        self.current_version = current_version
        self.expected_version = expected_version


class DocumentReset(Conflict):
    """The live document was rebuilt since the client got its copy: it must reload."""

    code = "document_reset"
    title = "Document reset"


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"
    title = "Invalid cursor"

    def __init__(self) -> None:
        super().__init__("the cursor is not one this server issued; start the listing again")


class XmlTooLarge(TooLarge):
    code = "xml_too_large"
    title = "XML too large"

    def __init__(self, *, size: int, limit: int) -> None:
        super().__init__(f"the XML is {size} bytes; the limit is {limit}", size=size, limit=limit)


class XmlMalformed(InvalidInput):
    code = "xml_malformed"
    title = "XML not well-formed"


class XmlForbidden(InvalidInput):
    """DOCTYPE, entity declarations or other constructs refused for safety."""

    code = "xml_forbidden_construct"
    title = "XML construct not allowed"


class XmlLimitExceeded(InvalidInput):
    code = "xml_limit_exceeded"
    title = "XML exceeds a structural limit"


class NotBpmn(InvalidInput):
    code = "not_bpmn"
    title = "Not a BPMN 2.0 document"


class DuplicateId(InvalidInput):
    """Two BPMN model or diagram-interchange elements share an ``id``.

    ``ids`` holds the first few duplicated values in document order (enough to
    find them); ``total`` is how many distinct values are duplicated.
    """

    code = "duplicate_id"
    title = "Duplicate element id"

    def __init__(
        self,
        ids: Sequence[str],
        *,
        total: int,
        lines: Mapping[str, Sequence[int | None]] | None = None,
    ) -> None:
        shown = list(ids)
        more = f" and {total - len(shown)} more" if total > len(shown) else ""
        fields: dict[str, Any] = {"ids": shown, "total": total}
        where = {i: [line for line in lines.get(i, ()) if line] for i in shown} if lines else {}
        if lines is not None:
            fields["lines"] = where
        described = ", ".join(
            f"{i!r} (lines {', '.join(map(str, where[i]))})" if where.get(i) else repr(i)
            for i in shown
        )
        super().__init__(
            f"element ids must be unique; used more than once: {described}{more}", **fields
        )
        self.ids = shown
        self.total = total
        self.lines = where


class StoreUnavailable(Unavailable):
    code = "store_unavailable"
    title = "Diagram store unavailable"


class BlobStoreUnavailable(Unavailable):
    code = "blob_store_unavailable"
    title = "Blob store unavailable"


class UpdateLogUnavailable(Unavailable):
    code = "update_log_unavailable"
    title = "Update log unavailable"


class DiagramExists(Conflict):
    code = "diagram_exists"
    title = "Diagram already exists"

    def __init__(self, diagram_id: str) -> None:
        super().__init__(f"a diagram {diagram_id!r} already exists", diagramId=diagram_id)
