"""Email: RFC 822 (.eml) and Outlook (.msg); the body is indexed, attachments only listed."""

from __future__ import annotations

import email
import email.policy
import io
from email.message import EmailMessage

from fathom.ingest.document import IngestError, ReasonCode
from fathom.ingest.normalize import bom_encoding, decode_text
from fathom.ingest.parse.base import _Raw


def _parse_eml(data: bytes, filename: str) -> _Raw:
    """RFC 822 mail: body only (attachments are listed in metadata, not indexed).

    Attachments would be partitioned with their own, unconfigured strategies
    (image attachments go to hi_res and try to download a model), so the API
    should ingest them as documents of their own.  A whole message saved as
    UTF-16 (with BOM) is transcoded first: the email parser reads bytes as ASCII.
    """
    from unstructured.partition.email import partition_email

    if bom_encoding(data):
        data = decode_text(data).text.encode("utf-8")
    message = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(message, EmailMessage) or not message.keys():
        raise IngestError(ReasonCode.CORRUPT, "no email headers found")
    elements = partition_email(file=io.BytesIO(data), process_attachments=False, metadata_filename=filename)
    headers = _email_headers(message)
    return _Raw(elements, title=headers.get("subject"), metadata=dict(headers) | _email_attachments(message))


def _email_headers(message: EmailMessage) -> dict[str, str]:
    names = {"subject": "Subject", "from": "From", "to": "To", "cc": "Cc", "date": "Date", "message_id": "Message-ID"}
    values = {key: " ".join(str(message.get(header, "")).split()) for key, header in names.items()}
    return {key: value for key, value in values.items() if value}


def _email_attachments(message: EmailMessage) -> dict[str, object]:
    names = [part.get_filename() or part.get_content_type() for part in message.iter_attachments()]
    return {"attachments": names} if names else {}


def _parse_msg(data: bytes, filename: str) -> _Raw:
    """Outlook .msg via python-oxmsg; like .eml, the body only."""
    from oxmsg import Message
    from unstructured.partition.msg import partition_msg

    try:
        message = Message.load(data)
    except ValueError as exc:  # raised for "not an Outlook MSG file"
        raise IngestError(ReasonCode.CORRUPT, str(exc)) from exc
    elements = partition_msg(file=io.BytesIO(data), process_attachments=False, metadata_filename=filename)
    metadata: dict[str, object] = {"subject": message.subject, "from": message.sender}
    metadata["to"] = ", ".join(r.email_address for r in message.recipients if r.email_address)
    metadata["date"] = message.sent_date.isoformat() if message.sent_date else None
    metadata["attachments"] = [a.file_name for a in message.attachments if a.file_name]
    return _Raw(elements, title=message.subject or None, metadata={k: v for k, v in metadata.items() if v})
