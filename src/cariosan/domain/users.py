"""Users of a workspace: upsert, read, delete, and minting their tokens."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from cariosan.blobs.store import BlobStore
from cariosan.config import Limits
from cariosan.db import events as event_rows
from cariosan.db import flags as flag_rows
from cariosan.db import privacy as privacy_rows
from cariosan.db import users as rows
from cariosan.db.pool import Database
from cariosan.domain import audit, cursors, privacy, tokens
from cariosan.domain.auth import Caller
from cariosan.domain.custom_data import storable_text, valid_data
from cariosan.domain.ids import customer_id
from cariosan.domain.permissions import WORKSPACE_ROLES
from cariosan.domain.views import MemberView, to_payload
from cariosan.errors import NotFound, ValidationFailed

MAX_NAME = 200
MAX_URL = 2048


class Sessions(Protocol):
    """The live sockets of every server node (realtime/hub.py): told after a commit."""

    def revoked(self, workspace_id: uuid.UUID, user_id: str, valid_after_us: int) -> None:
        """Close the user's sockets whose token was minted before `valid_after_us`."""


async def upsert_user(
    database: Database,
    workspace_id: uuid.UUID,
    user_id: str,
    *,
    name: str | None,
    image_url: str | None,
    role: str | None,
    data: dict[str, Any] | None,
    fields_set: frozenset[str],
    limits: Limits,
) -> tuple[rows.UserRow, bool]:
    customer_id("user_id", user_id)
    if role is not None and role not in WORKSPACE_ROLES:
        raise ValidationFailed("role must be one of " + ", ".join(WORKSPACE_ROLES))
    if name is not None and len(name) > MAX_NAME:
        raise ValidationFailed(f"name must have at most {MAX_NAME} characters")
    if image_url is not None and len(image_url) > MAX_URL:
        raise ValidationFailed(f"image_url must have at most {MAX_URL} characters")
    if name is not None:
        storable_text("name", name)
    if image_url is not None:
        storable_text("image_url", image_url)
    if data is not None:
        valid_data(data, limits)
    async with database.transaction() as conn:
        before = await rows.get_user(conn, workspace_id, user_id) if role is not None else None
        user, created = await rows.upsert_user(
            conn,
            workspace_id,
            user_id,
            name=name,
            image_url=image_url,
            role=role,
            data=data,
            fields_set=fields_set,
        )
        previous_role = "user" if before is None else before.role
        if user.role != previous_role:
            await audit.record(
                conn,
                workspace_id,
                actor=audit.BACKEND,
                action=audit.ROLE_CHANGED,
                target=f"user:{user_id}",
                data={"from": previous_role, "to": user.role},
            )
    return user, created


async def get_user(database: Database, workspace_id: uuid.UUID, user_id: str) -> rows.UserRow:
    customer_id("user_id", user_id)
    async with database.connection() as conn:
        user = await rows.get_user(conn, workspace_id, user_id)
    if user is None:
        raise NotFound(f"no such user: {user_id}")
    return user


async def delete_user(
    database: Database,
    sessions: Sessions,
    workspace_id: uuid.UUID,
    user_id: str,
    mode: str,
    blobs: BlobStore | None = None,
    upload_url_seconds: float = 900,
) -> None:
    """Anonymize or hard-delete; either way the user's tokens stop working and its open
    sockets are closed on every node.

    A hard delete erases the user from every table, event, webhook body and (with `blobs`) the
    attachment store (domain/privacy.py). Its files are deleted before the transaction
    commits: when the store fails the delete fails (UNAVAILABLE) and can be asked again, rather
    than leaving files that no record points to any more."""
    customer_id("user_id", user_id)
    if mode not in ("anonymize", "hard"):
        raise ValidationFailed("mode must be 'anonymize' or 'hard'")
    data: dict[str, Any] = {"mode": mode}
    # A minute past the upload URLs' expiry, for clocks a little apart (as the cleanup job).
    window = upload_url_seconds + 60
    async with database.transaction() as conn:
        if mode == "hard":
            user = await rows.get_user(conn, workspace_id, user_id)
            # Its reports, and the flags about it (rows go with its row; events here), before
            # the erase below rewrites the events that name it.
            await flag_rows.remove_flags_by(conn, workspace_id, user_id)
            await event_rows.remove_flag_events_about(conn, workspace_id, user_id)
            # Also without its row: what an older release's hard delete left behind (the
            # attachments and their files) is erased when asked again.
            erased = await privacy.erase_in_transaction(
                conn, workspace_id, user_id, user, upload_window=window
            )
            removed = await rows.hard_delete_user(conn, workspace_id, user_id)
            found = user is not None or erased.anything
            data |= {"files": len(erased.files), "events": erased.events}
            if user is None:
                data["leftovers_only"] = True
            if blobs is not None:
                await privacy.delete_files(blobs, workspace_id, erased.files)
            # The remaining members' clients (and every node's view of who receives a
            # channel's events) learn that the user left, as with any removal. Not filed as
            # the user's own events: a user created later with this id must not read them.
            # They name the user's id (clients must know who left), as the audit entry below
            # does; the retention job trims them with the rest of the log.
            for member in removed or ():
                view = MemberView(user_id=user_id, role=member.role, joined_at=member.joined_at)
                await event_rows.append_event(
                    conn,
                    workspace_id,
                    "member.removed",
                    {"member": to_payload(view), "user_id": user_id},
                    channel_id=member.channel_id,
                )
        else:
            found = await rows.anonymize_user(conn, workspace_id, user_id)
        if found:
            await audit.record(
                conn,
                workspace_id,
                actor=audit.BACKEND,
                action=audit.USER_DELETED,
                target=f"user:{user_id}",
                data=data,
            )
        # Taken inside the transaction, so it is not before the row's own stamp.
        deleted_at = await rows.database_now(conn)
    if not found:
        raise NotFound(f"no such user: {user_id}")
    sessions.revoked(workspace_id, user_id, tokens.micros(deleted_at))
    if mode == "hard":
        # An upload the user asked for while the delete ran (its token was still good).
        async with database.transaction() as conn:
            late = await privacy_rows.delete_attachments(conn, workspace_id, user_id, window)
            if blobs is not None:
                await privacy.delete_files(blobs, workspace_id, late)


async def revoke_tokens(
    database: Database, sessions: Sessions, workspace_id: uuid.UUID, user_id: str
) -> None:
    """Every token of the user minted before now is refused, and its sockets closed."""
    customer_id("user_id", user_id)
    async with database.transaction() as conn:
        valid_after = await rows.revoke_tokens(conn, workspace_id, user_id)
        if valid_after is None:
            raise NotFound(f"no such user: {user_id}")
        await audit.record(
            conn,
            workspace_id,
            actor=audit.BACKEND,
            action=audit.TOKENS_REVOKED,
            target=f"user:{user_id}",
        )
    sessions.revoked(workspace_id, user_id, tokens.micros(valid_after))


async def mint_token(
    database: Database, jwt_secret: str, workspace_id: uuid.UUID, user_id: str, ttl_seconds: int
) -> tuple[str, int]:
    """A JWT for an existing, active user; (token, expires_at as a Unix time)."""
    customer_id("user_id", user_id)
    async with database.connection() as conn:
        issued = await rows.issue_time(conn, workspace_id, user_id)
    if issued is None:
        raise NotFound(f"no such user: {user_id}")
    return tokens.mint(
        jwt_secret, workspace_id, user_id, ttl_seconds, issued_at_us=tokens.micros(issued)
    )


# ---- the user directory ------------------------------------------------------------------------

MAX_DIRECTORY_PAGE = 200
MAX_QUERY = 200
_LAST_CODE_POINT = 0x10FFFF


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching what starts with `prefix` literally (`%`, `_` and `\\` escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string above every string that starts with `prefix`, in code point (UTF-8
    byte) order, as text_pattern_ops compares; None when there is none."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last == _LAST_CODE_POINT:
            continue
        following = last + 1
        if 0xD800 <= following <= 0xDFFF:  # surrogates are not text
            following = 0xE000
        return "".join(chars) + chr(following)
    return None


async def list_users(
    database: Database, caller: Caller, *, q: str | None, limit: int, cursor: str | None
) -> tuple[list[rows.UserRow], str | None]:
    """A page of the directory, by id: every active user for the backend acting as itself;
    for a user (or the backend acting as one), itself and the users it shares a channel with.
    `q` matches the start of the id or the name, ignoring case."""
    if not 1 <= limit <= MAX_DIRECTORY_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_DIRECTORY_PAGE}")
    after = None if not cursor else cursors.decode_key(cursor)
    if q is not None and len(q) > MAX_QUERY:
        raise ValidationFailed(f"q must have at most {MAX_QUERY} characters")
    if q:
        storable_text("q", q)
    async with database.connection() as conn:
        prefix = pattern = upper = None
        if q:
            prefix = await rows.lowered(conn, q)
            pattern = like_prefix(prefix)
            upper = prefix_upper_bound(prefix)
            if upper is None:
                raise ValidationFailed("q must contain a character below U+10FFFF")
        found = await rows.directory(
            conn,
            caller.workspace_id,
            prefix=prefix,
            pattern=pattern,
            upper=upper,
            after=after,
            limit=limit + 1,
            sharing_with=caller.user_id,
        )
    page = found[:limit]
    next_cursor = cursors.encode_key(page[-1].id) if len(found) > limit else None
    return page, next_cursor
