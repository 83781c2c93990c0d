"""The permission table (domain/permissions.py) is what the API enforces, cell by cell.

For every action, channel type and capacity of the table, a caller holding that capacity calls
the API, and the call succeeds exactly when the table's row allows any capacity the caller
holds. Each capacity is a persona: the backend, a workspace admin and a workspace moderator
(not members of the channel), the channel's owner, a channel moderator, a plain member, the
author of the message acted on, and the user an action is about (self). docs/moderation.md
prints the same table.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cariosan.domain import permissions
from cariosan.domain.permissions import CHANNEL_TYPES, TABLE, WORKSPACE, Action, Who
from cariosan.domain.workspaces import NewWorkspace
from tests.support.chat import bearer, make_user
from tests.support.server import RunningServer


@pytest.fixture
async def server(shared_server: RunningServer) -> RunningServer:
    """Every test here works in a workspace of its own: one server serves them all."""
    return shared_server


ROOT = Path(__file__).resolve().parents[2]

# Workspace users: the personas acting as a user, and the channel's other people.
USERS = {
    "adm": "admin",
    "wmod": "moderator",
    "own": "user",
    "cmod": "user",
    "mem": "user",
    "writer": "user",
    "outsider": "user",
    "newcomer": "user",
    "bystander": "user",
}


@dataclass
class Persona:
    who: Who
    # The user acted as (None: the backend for itself).
    user: str | None
    # Which capacities the persona holds in the case at hand (as the server computes them).
    capacities: frozenset[Who]


@dataclass
class Case:
    http: httpx.AsyncClient
    backend: httpx.AsyncClient
    channel: str
    type: str
    message: str
    persona: Persona
    # Persona key -> the user id it is in this case (a dm has its own two members).
    people: dict[str, str]

    @property
    def user(self) -> str | None:
        return None if self.persona.user is None else self.people[self.persona.user]

    @property
    def mem(self) -> str:
        return self.people["mem"]


Performer = Callable[[Case], Awaitable[httpx.Response]]


class World:
    def __init__(self, server: RunningServer, workspace: NewWorkspace, tokens: dict[str, str]):
        self.server = server
        self.workspace = workspace
        self.tokens = tokens
        self.count = itertools.count()

    def client(self, user: str | None) -> httpx.AsyncClient:
        credential = self.workspace.api_secret if user is None else self.tokens[user]
        return self.server.client(headers=bearer(credential))

    async def token(self, backend: httpx.AsyncClient, user: str) -> str:
        if user not in self.tokens:
            created = await backend.put(f"/v1/users/{user}", json={"name": user})
            assert created.status_code == 200, created.text
            minted = await backend.post(f"/v1/users/{user}/token")
            assert minted.status_code == 200, minted.text
            self.tokens[user] = minted.json()["token"]
        return self.tokens[user]

    async def channel(
        self, backend: httpx.AsyncClient, type: str
    ) -> tuple[str, str, dict[str, str]]:
        """A fresh channel of `type`, a message of `writer` in it, and who is who. A group or
        public one: own (owner), cmod (channel moderator), mem, writer, bystander; a dm: a
        fresh mem and writer (a pair has one dm)."""
        n = next(self.count)
        channel_id = f"{type}-{n}"
        people = {user: user for user in USERS}
        if type == "dm":
            people["mem"], people["writer"] = f"mem-{n}", f"writer-{n}"
            for user in (people["mem"], people["writer"]):
                await self.token(backend, user)
            members = [people["writer"]]
            body = {"type": "dm", "id": channel_id, "members": members, "user_id": people["mem"]}
        else:
            members = ["cmod", "mem", "writer", "bystander"]
            body = {"type": type, "id": channel_id, "members": members, "user_id": "own"}
        created = await backend.post("/v1/channels", json=body)
        assert created.status_code == 201, created.text
        if type != "dm":
            promoted = await backend.patch(
                f"/v1/channels/{channel_id}/members/cmod", json={"role": "moderator"}
            )
            assert promoted.status_code == 200, promoted.text
        sent = await backend.post(
            f"/v1/channels/{channel_id}/messages",
            json={"text": "hi", "user_id": people["writer"]},
        )
        assert sent.status_code == 201, sent.text
        return channel_id, sent.json()["id"], people


def _personas(action: Action, type: str) -> list[Persona]:
    """Every persona that can exist in a channel of `type`, with its capacities for `action`."""
    in_channel = {"own", "cmod", "mem", "writer"} if type != "dm" else {"mem", "writer"}
    found = [
        Persona(Who.BACKEND, None, frozenset({Who.BACKEND})),
        Persona(Who.ADMIN, "adm", frozenset({Who.ADMIN})),
        Persona(Who.MODERATOR, "wmod", frozenset({Who.MODERATOR})),
    ]
    if type != "dm":
        found.append(Persona(Who.OWNER, "own", frozenset({Who.OWNER, Who.MEMBER})))
        cmod = frozenset({Who.CHANNEL_MODERATOR, Who.MEMBER})
        found.append(Persona(Who.CHANNEL_MODERATOR, "cmod", cmod))
    found.append(Persona(Who.MEMBER, "mem", frozenset({Who.MEMBER})))
    found.append(Persona(Who.AUTHOR, "writer", frozenset({Who.AUTHOR, Who.MEMBER})))
    # Self: the user the action is about (join: an outsider; leave: a member).
    self_user = "outsider" if action == Action.MEMBER_JOIN else "mem"
    self_caps = {Who.SELF} | ({Who.MEMBER} if self_user in in_channel else set())
    found.append(Persona(Who.SELF, self_user, frozenset(self_caps)))
    resolved = []
    for persona in found:
        caps = set(persona.capacities)
        # Joining and leaving are about the caller itself; to leave, the workspace roles
        # first join (_prepare) where they can.
        if action in (Action.MEMBER_JOIN, Action.MEMBER_LEAVE) and persona.user is not None:
            caps.add(Who.SELF)
        if action == Action.MEMBER_LEAVE and persona.user in _JOIN_TO_LEAVE and type != "dm":
            caps.add(Who.MEMBER)
        resolved.append(Persona(persona.who, persona.user, frozenset(caps)))
    return resolved


_JOIN_TO_LEAVE = ("adm", "wmod")


async def _prepare(case: Case, action: Action) -> None:
    """Make the case's persona what _personas says it is."""
    user = case.user
    if action == Action.MEMBER_LEAVE and user in _JOIN_TO_LEAVE and case.type != "dm":
        added = await case.backend.post(
            f"/v1/channels/{case.channel}/members", json={"user_ids": [user]}
        )
        assert added.status_code == 200, added.text


async def _update(case: Case) -> httpx.Response:
    return await case.http.patch(f"/v1/channels/{case.channel}", json={"name": "renamed"})


async def _delete_channel(case: Case) -> httpx.Response:
    return await case.http.delete(f"/v1/channels/{case.channel}")


async def _add(case: Case) -> httpx.Response:
    path = f"/v1/channels/{case.channel}/members"
    return await case.http.post(path, json={"user_ids": ["newcomer"]})


async def _join(case: Case) -> httpx.Response:
    body: dict[str, object] = {"user_ids": [case.user]}
    if case.user is None:
        # The backend adding a user is "add members" with the user as subject: as itself.
        body = {"user_ids": ["newcomer"]}
    return await case.http.post(f"/v1/channels/{case.channel}/members", json=body)


async def _remove(case: Case) -> httpx.Response:
    # Somebody else (removing oneself is leaving); a dm has no third member.
    target = case.mem if case.type == "dm" else "bystander"
    return await case.http.delete(f"/v1/channels/{case.channel}/members/{target}")


async def _leave(case: Case) -> httpx.Response:
    user = case.user or case.mem
    return await case.http.delete(f"/v1/channels/{case.channel}/members/{user}")


async def _role(case: Case) -> httpx.Response:
    path = f"/v1/channels/{case.channel}/members/{case.mem}"
    return await case.http.patch(path, json={"role": "moderator"})


async def _owner(case: Case) -> httpx.Response:
    path = f"/v1/channels/{case.channel}/members/{case.mem}"
    return await case.http.patch(path, json={"role": "owner"})


async def _edit(case: Case) -> httpx.Response:
    return await case.http.patch(f"/v1/messages/{case.message}", json={"text": "edited"})


async def _delete_message(case: Case) -> httpx.Response:
    return await case.http.delete(f"/v1/messages/{case.message}")


async def _audit(case: Case) -> httpx.Response:
    return await case.http.get("/v1/audit")


# Bans (issue 14, point 2): the body's user_id is the banned user (a bystander).
async def _ban_workspace(case: Case) -> httpx.Response:
    return await case.http.post("/v1/bans", json={"user_id": "bystander"})


async def _ban_channel(case: Case) -> httpx.Response:
    return await case.http.post(
        "/v1/bans", json={"user_id": "bystander", "channel_id": case.channel}
    )


# Flags and the review queue (issue 14 point 4).
async def _flag_message(case: Case) -> httpx.Response:
    return await case.http.post(f"/v1/messages/{case.message}/flag", json={"reason": "matrix"})


async def _flag_review(case: Case) -> httpx.Response:
    return await case.http.get("/v1/moderation/flags")


async def _flag_resolve(case: Case) -> httpx.Response:
    # The backend's open flag of the case's message (the same one again after a refusal).
    flagged = await case.backend.post(f"/v1/messages/{case.message}/flag", json={})
    assert flagged.status_code in (200, 201), flagged.text
    path = f"/v1/moderation/flags/{flagged.json()['id']}/resolve"
    return await case.http.post(path, json={"action": "dismiss"})


# Mutes and blocks (issue 14.3).
async def _mute_channel(case: Case) -> httpx.Response:
    return await case.http.put(f"/v1/channels/{case.channel}/mute")


# Pins and slow mode (issue 14 point 5).
async def _pin(case: Case) -> httpx.Response:
    return await case.http.put(f"/v1/messages/{case.message}/pin")


# Privacy (issue 14, point 7).
async def _export(case: Case) -> httpx.Response:
    return await case.http.get(f"/v1/users/{case.mem}/export")


PERFORMERS: dict[Action, Performer] = {
    Action.CHANNEL_UPDATE: _update,
    Action.CHANNEL_DELETE: _delete_channel,
    Action.MEMBER_ADD: _add,
    Action.MEMBER_JOIN: _join,
    Action.MEMBER_REMOVE: _remove,
    Action.MEMBER_LEAVE: _leave,
    Action.MEMBER_ROLE: _role,
    Action.MEMBER_OWNER: _owner,
    Action.MESSAGE_EDIT: _edit,
    Action.MESSAGE_DELETE: _delete_message,
    Action.AUDIT_READ: _audit,
    # Bans (issue 14, point 2).
    Action.BAN_WORKSPACE: _ban_workspace,
    Action.BAN_CHANNEL: _ban_channel,
    # Flags and the review queue (issue 14 point 4).
    Action.FLAG_MESSAGE: _flag_message,
    Action.FLAG_REVIEW: _flag_review,
    Action.FLAG_RESOLVE: _flag_resolve,
    # Mutes and blocks (issue 14.3).
    Action.CHANNEL_MUTE: _mute_channel,
    # Pins and slow mode (issue 14 point 5).
    Action.MESSAGE_PIN: _pin,
    # Privacy (issue 14, point 7).
    Action.USER_EXPORT: _export,
}


def test_every_action_of_the_table_has_a_caller_in_this_matrix() -> None:
    assert set(PERFORMERS) == set(Action)


def test_docs_print_the_table_the_code_enforces() -> None:
    docs = (ROOT / "docs" / "moderation.md").read_text()
    assert permissions.markdown_table() in docs


def test_a_dm_has_no_owner_or_channel_moderator_cells() -> None:
    for by_scope in TABLE.values():
        if "dm" in by_scope:
            assert not by_scope["dm"] & {Who.OWNER, Who.CHANNEL_MODERATOR}


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.name.lower())
async def test_the_api_allows_exactly_what_the_table_says(
    server: RunningServer, workspace: NewWorkspace, action: Action
) -> None:
    made = await asyncio.gather(
        *(make_user(server, workspace, user, role=r) for user, r in USERS.items())
    )
    world = World(server, workspace, dict(zip(USERS, made, strict=True)))
    scopes = list(TABLE[action])
    covered: set[tuple[str, Who]] = set()
    mismatches: list[str] = []

    async def check_scope(backend: httpx.AsyncClient, scope: str) -> None:
        channel_type = "group" if scope == WORKSPACE else scope
        fresh = None
        for persona in _personas(action, channel_type):
            # A refused call changes nothing, so the next persona may use the same channel.
            fresh = fresh or await world.channel(backend, channel_type)
            channel, message, people = fresh
            user = None if persona.user is None else people[persona.user]
            async with world.client(user) as http:
                case = Case(http, backend, channel, channel_type, message, persona, people)
                await _prepare(case, action)
                response = await PERFORMERS[action](case)
            expected = permissions.allowed(action, scope, persona.capacities)
            if response.status_code >= 500:
                mismatches.append(f"{scope}/{persona.who}: {response.status_code}")
            elif (response.status_code < 300) != expected:
                mismatches.append(
                    f"{scope}/{persona.who} (holds {sorted(persona.capacities)}): "
                    f"expected {'allowed' if expected else 'refused'}, got "
                    f"{response.status_code} {response.text[:160]}"
                )
            elif not expected:
                # Refused as forbidden, or as not found to someone who may not see it.
                assert response.status_code in (403, 404), response.text
            if response.status_code < 300 or action == Action.MEMBER_LEAVE:
                fresh = None
            covered.update((scope, who) for who in persona.capacities)

    # The scopes (channel types) use channels of their own: checked side by side.
    async with world.client(None) as backend:
        await asyncio.gather(*(check_scope(backend, scope) for scope in scopes))
    assert not mismatches, "\n".join(mismatches)
    # Every cell of the row was held by some persona (dm has no owner or channel moderator).
    for scope in scopes:
        applicable = set(Who) - ({Who.OWNER, Who.CHANNEL_MODERATOR} if scope == "dm" else set())
        missing = {who for who in applicable if (scope, who) not in covered}
        assert not missing, f"{action.name} {scope}: no persona held {sorted(missing)}"


def test_the_table_names_every_channel_type_or_the_workspace() -> None:
    for action, by_scope in TABLE.items():
        assert set(by_scope) in ({*CHANNEL_TYPES}, {WORKSPACE}), action
