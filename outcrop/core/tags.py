"""Resource tags: Bedrock's TagResource, UntagResource and ListTagsForResource, for every taggable resource.

The ARN's resource type ("guardrail", "custom-model", "model-customization-job", ...) picks the service that
owns it. That service locates the resource in the caller's account and checks IAM on its ARN; the tags
themselves live in the row's `tags` column, a JSON list of {key, value}, as the create calls wrote them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.governance import CallContext
from outcrop.errors import Invalid, NotFound
from outcrop.storage.repositories import AccountScope

MAX_TAGS = 200
# (account, row ID) of the resource an ARN names; checks IAM on it; NotFound when there is none.
Locate = Callable[[CallContext, str], tuple[str, str]]

_ARN = re.compile(r"^arn:aws:bedrock:[a-z0-9-]+:\d*:(?P<type>[a-z-]+)/.+$")


def check_tags(tags: Any, field: str = "tags") -> list[dict[str, str]]:
    """A request's tag list (`[{"key", "value"}]`), checked against Bedrock's limits."""
    if tags is None:
        return []
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise Invalid(f"{field} must be a list of at most {MAX_TAGS} {{key, value}} objects")
    out = []
    for tag in tags:
        if not isinstance(tag, dict) or not isinstance(tag.get("key"), str) or not isinstance(tag.get("value"), str) \
                or not 1 <= len(tag["key"]) <= 128 or len(tag["value"]) > 256:
            raise Invalid(f"each of {field} needs a key of 1-128 characters and a value of at most 256")
        out.append({"key": tag["key"], "value": tag["value"]})
    return out


class Tags:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._owners: dict[str, tuple[type[Any], Locate]] = {}

    def register(self, resource_type: str, table: type[Any], locate: Locate) -> None:
        """`table` rows (with a `tags` column) are the resources of this ARN type; `locate` finds one."""
        self._owners[resource_type] = (table, locate)

    def list(self, ctx: CallContext, resource_arn: Any) -> list[dict[str, str]]:
        table, account, row_id = self._locate(ctx, resource_arn)
        with self.sessions() as session:
            return list(json.loads(self._row(session, table, account, row_id).tags or "[]"))

    def tag(self, ctx: CallContext, resource_arn: Any, tags: Any) -> None:
        added = {t["key"]: t["value"] for t in check_tags(tags)}
        self._edit(ctx, resource_arn, lambda current: current.update(added))

    def untag(self, ctx: CallContext, resource_arn: Any, keys: Any) -> None:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise Invalid("tagKeys must be a list of strings")

        def drop(current: dict[str, str]) -> None:
            for key in keys:
                current.pop(key, None)

        self._edit(ctx, resource_arn, drop)

    def _edit(self, ctx: CallContext, resource_arn: Any, change: Callable[[dict[str, str]], Any]) -> None:
        table, account, row_id = self._locate(ctx, resource_arn)
        with self.sessions.begin() as session:
            row = self._row(session, table, account, row_id)
            current = {t["key"]: t["value"] for t in json.loads(row.tags or "[]")}
            change(current)
            if len(current) > MAX_TAGS:
                raise Invalid(f"A resource can hold at most {MAX_TAGS} tags")
            row.tags = json.dumps([{"key": k, "value": v} for k, v in current.items()])

    def _locate(self, ctx: CallContext, resource_arn: Any) -> tuple[type[Any], str, str]:
        match = _ARN.match(resource_arn) if isinstance(resource_arn, str) else None
        if match is None:
            raise Invalid(f"resourceARN must be a Bedrock resource ARN, got {resource_arn!r}")
        owner = self._owners.get(match["type"])
        if owner is None:
            raise Invalid(f"resources of type {match['type']} cannot be tagged here; taggable: "
                          f"{', '.join(sorted(self._owners))}")
        table, locate = owner
        account, row_id = locate(ctx, resource_arn)
        return table, account, row_id

    @staticmethod
    def _row(session: Session, table: type[Any], account: str, row_id: str) -> Any:
        row = AccountScope(session, account).get(table, row_id)
        if row is None:  # deleted between the lookup and now
            raise NotFound(f"The resource {row_id} does not exist")
        return row
