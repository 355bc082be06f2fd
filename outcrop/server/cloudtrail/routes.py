"""CloudTrail's LookupEvents (JSON 1.1, `X-Amz-Target: com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.`).

boto3's `cloudtrail` client and `aws cloudtrail lookup-events --endpoint-url …` work unchanged;
server/awsjson.py dispatches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from outcrop import errors
from outcrop.core.governance import CallContext
from outcrop.server import fields

TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."


def _time(body: dict[str, Any], key: str) -> datetime | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.Invalid(f"{key} must be a timestamp")
    return datetime.fromtimestamp(value, UTC)


def _attributes(body: dict[str, Any]) -> list[tuple[str, str]]:
    items = fields.get(body, "LookupAttributes", list, "") or []
    if len(items) > 1:
        raise errors.Invalid("You cannot specify more than one lookup attribute.")
    pairs = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("AttributeKey"), str) \
                or not isinstance(item.get("AttributeValue"), str):
            raise errors.Invalid("Each lookup attribute needs an AttributeKey and an AttributeValue.")
        pairs.append((item["AttributeKey"], item["AttributeValue"]))
    return pairs


def lookup_events(svc: Any, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
    start, end = _time(body, "StartTime"), _time(body, "EndTime")
    if start and end and start > end:
        raise errors.Invalid("Start time must be earlier than end time.")
    rows, token = svc.audit.lookup(ctx, _attributes(body), start, end, fields.get(body, "MaxResults", int, "") or 50,
                                   fields.get(body, "NextToken", str, ""))
    events = []
    for row in rows:
        record = json.loads(row.record)
        event = {"EventId": row.id, "EventName": row.event_name, "ReadOnly": str(row.read_only).lower(),
                 "EventTime": row.event_time.replace(tzinfo=UTC).timestamp(), "EventSource": row.event_source,
                 "Resources": record.get("resources", []), "CloudTrailEvent": row.record}
        if row.access_key_id:
            event["AccessKeyId"] = row.access_key_id
        if row.username:
            event["Username"] = row.username
        events.append(event)
    return {"Events": events, **({"NextToken": token} if token else {})}


# Operation → handler(services, ctx, body). Each name must also be in outcrop.core.access.OPERATIONS.
HANDLERS: dict[str, Callable[[Any, CallContext, dict[str, Any]], dict[str, Any]]] = {
    "LookupEvents": lookup_events,
}
CODES: list[tuple[type[errors.OutcropError], str]] = [
    (errors.Invalid, "InvalidLookupAttributesException"),
    (errors.AccessDenied, "AccessDeniedException"),
    (errors.Throttled, "ThrottlingException"),
    (errors.NotFound, "UnsupportedOperationException"),
]
