"""Who may do what: the one permission table, per role and per channel type.

Every check of a moderation or management action asks `allowed()`; docs/moderation.md prints
`markdown_table()` and a test keeps the two equal, and the authorization matrix test calls the
API once per cell. A caller holds several capacities at once (a workspace moderator who also
owns the channel and wrote the message): it may act when any of them may.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from cariosan.errors import Forbidden

# Workspace roles (`PUT /v1/users/{id}` `role`) and channel member roles.
USER = "user"
MODERATOR = "moderator"
ADMIN = "admin"
WORKSPACE_ROLES = (USER, MODERATOR, ADMIN)

OWNER = "owner"
CHANNEL_MODERATOR = "moderator"
MEMBER = "member"
CHANNEL_ROLES = (OWNER, CHANNEL_MODERATOR, MEMBER)

CHANNEL_TYPES = ("dm", "group", "public")
# The scope of actions that are not about one channel (the audit log, workspace bans).
WORKSPACE = "workspace"


class Who(StrEnum):
    """The capacities a caller may act in (the table's columns)."""

    BACKEND = "backend"  # the API secret, acting as itself or as a user
    ADMIN = "admin"  # workspace role admin
    MODERATOR = "moderator"  # workspace role moderator
    OWNER = "owner"  # the channel's owner (its creator)
    CHANNEL_MODERATOR = "channel moderator"  # channel member role moderator
    MEMBER = "member"  # any member of the channel
    AUTHOR = "author"  # the message's author
    SELF = "self"  # the user the action is about is the caller


class Action(StrEnum):
    """What a caller does (the table's rows)."""

    CHANNEL_UPDATE = "change a channel (name, data, cooldown, frozen)"
    CHANNEL_DELETE = "delete a channel"
    MEMBER_ADD = "add members"
    MEMBER_JOIN = "join (add oneself)"
    MEMBER_REMOVE = "remove a member"
    MEMBER_LEAVE = "leave (remove oneself)"
    MEMBER_ROLE = "change a member's role (moderator, member)"
    MEMBER_OWNER = "make a member an owner, or change an owner's role"
    MESSAGE_EDIT = "edit a message"
    MESSAGE_DELETE = "delete a message"
    AUDIT_READ = "read the audit log"
    # Bans (issue 14, point 2).
    BAN_WORKSPACE = "ban, unban or list bans workspace-wide"
    BAN_CHANNEL = "ban, unban or list bans in a channel"
    # Flags and the review queue (issue 14 point 4). Flagging a user is open to every user.
    FLAG_MESSAGE = "flag a message"
    FLAG_REVIEW = "list flags (the review queue)"
    FLAG_RESOLVE = "resolve a flag (dismiss, delete the message, ban the user)"
    # Mutes and blocks (issue 14.3): muting a channel is the member's own business.
    CHANNEL_MUTE = "mute or unmute a channel (for oneself)"
    # Pins and slow mode (issue 14 point 5).
    MESSAGE_PIN = "pin or unpin a message"
    # Privacy (issue 14, point 7).
    USER_EXPORT = "export everything stored about a user"


# Whoever may moderate a channel: "mod" in API.md.
_WORKSPACE_MODS = frozenset({Who.BACKEND, Who.ADMIN, Who.MODERATOR})
_CHANNEL_MODS = _WORKSPACE_MODS | {Who.OWNER, Who.CHANNEL_MODERATOR}
_OWNERS = _WORKSPACE_MODS | {Who.OWNER}
_NOBODY: frozenset[Who] = frozenset()


# A dm has two plain members and no owner, and their roles never change.
_NOT_IN_DM = frozenset({Who.OWNER, Who.CHANNEL_MODERATOR})


def _every_type(who: Iterable[Who]) -> dict[str, frozenset[Who]]:
    return _types(who, who, who)


def _workspace(who: Iterable[Who]) -> dict[str, frozenset[Who]]:
    return {WORKSPACE: frozenset(who)}


def _types(
    dm: Iterable[Who], group: Iterable[Who], public: Iterable[Who]
) -> dict[str, frozenset[Who]]:
    return {
        "dm": frozenset(dm) - _NOT_IN_DM,
        "group": frozenset(group),
        "public": frozenset(public),
    }


# action -> channel type (or WORKSPACE) -> capacities that may do it. A dm's two members never
# change.
TABLE: dict[Action, dict[str, frozenset[Who]]] = {
    Action.CHANNEL_UPDATE: _every_type(_CHANNEL_MODS),
    Action.CHANNEL_DELETE: _every_type({Who.BACKEND, Who.ADMIN, Who.OWNER}),
    Action.MEMBER_ADD: _types(_NOBODY, _CHANNEL_MODS, _CHANNEL_MODS),
    Action.MEMBER_JOIN: _types(_NOBODY, _CHANNEL_MODS, _CHANNEL_MODS | {Who.SELF}),
    Action.MEMBER_REMOVE: _types(_NOBODY, _CHANNEL_MODS, _CHANNEL_MODS),
    Action.MEMBER_LEAVE: _types(_NOBODY, _CHANNEL_MODS | {Who.SELF}, _CHANNEL_MODS | {Who.SELF}),
    Action.MEMBER_ROLE: _types(_NOBODY, _CHANNEL_MODS, _CHANNEL_MODS),
    Action.MEMBER_OWNER: _types(
        _NOBODY, _WORKSPACE_MODS | {Who.OWNER}, _WORKSPACE_MODS | {Who.OWNER}
    ),
    Action.MESSAGE_EDIT: _every_type({Who.BACKEND, Who.ADMIN, Who.AUTHOR}),
    Action.MESSAGE_DELETE: _every_type(_CHANNEL_MODS | {Who.AUTHOR}),
    Action.AUDIT_READ: _workspace({Who.BACKEND, Who.ADMIN}),
    # Bans (issue 14, point 2).
    Action.BAN_WORKSPACE: _workspace(_WORKSPACE_MODS),
    Action.BAN_CHANNEL: _every_type(_CHANNEL_MODS),
    # Flags and the review queue (issue 14 point 4): the backend flags as itself (a filter).
    Action.FLAG_MESSAGE: _every_type({Who.BACKEND, Who.MEMBER}),
    Action.FLAG_REVIEW: _workspace(_WORKSPACE_MODS),
    Action.FLAG_RESOLVE: _workspace(_WORKSPACE_MODS),
    # Mutes and blocks (issue 14.3). Muting or blocking a user is open to every user for itself
    # and is not about a channel or a role, so it has no row.
    Action.CHANNEL_MUTE: _every_type({Who.MEMBER}),
    # Pins and slow mode (issue 14 point 5).
    Action.MESSAGE_PIN: _every_type(_CHANNEL_MODS),
    # Privacy (issue 14, point 7): the API secret only, also against an admin's token.
    Action.USER_EXPORT: _workspace({Who.BACKEND}),
}


def allowed(action: Action, scope: str, capacities: Iterable[Who]) -> bool:
    """Whether any of `capacities` may do `action` in a channel of type `scope` (or WORKSPACE)."""
    permitted = TABLE[action][scope]
    return any(who in permitted for who in capacities)


def require(action: Action, scope: str, capacities: Iterable[Who]) -> None:
    """FORBIDDEN unless one of the caller's capacities may do `action` in this scope."""
    if allowed(action, scope, capacities):
        return
    where = "" if scope == WORKSPACE else f" in a {scope} channel"
    permitted = TABLE[action][scope]
    if not permitted:
        raise Forbidden(f"{action.value}: nobody may do this{where}")
    who = ", ".join(sorted(permitted))
    raise Forbidden(f"{action.value}: only {who} may do this{where}")


def workspace_capacities(is_server: bool, role: str) -> set[Who]:
    """What a caller is workspace-wide, from its credential and its user's role."""
    found: set[Who] = set()
    if is_server:
        found.add(Who.BACKEND)
    if role == ADMIN:
        found.add(Who.ADMIN)
    elif role == MODERATOR:
        found.add(Who.MODERATOR)
    return found


def channel_capacities(member_role: str | None) -> set[Who]:
    """What a member is in its channel, from its member role (None: not a member)."""
    if member_role is None:
        return set()
    found = {Who.MEMBER}
    if member_role == OWNER:
        found.add(Who.OWNER)
    elif member_role == CHANNEL_MODERATOR:
        found.add(Who.CHANNEL_MODERATOR)
    return found


def markdown_table() -> str:
    """The table as docs/moderation.md prints it: a row per action and group of channel types
    with the same cells ("all": every type; "workspace": not about one channel)."""
    columns = list(Who)
    lines = [
        "| action | channel type | " + " | ".join(w.value for w in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for action, by_type in TABLE.items():
        # Types with the same cells share a row, so the table stays short.
        groups: dict[frozenset[Who], list[str]] = {}
        for scope, permitted in by_type.items():
            groups.setdefault(permitted, []).append(scope)
        for permitted, types in groups.items():
            label = "all" if len(types) == len(CHANNEL_TYPES) else ", ".join(types)
            cells = " | ".join("yes" if w in permitted else "" for w in columns)
            lines.append(f"| {action.value} | {label} | {cells} |")
    return "\n".join(lines) + "\n"
