"""Which JWT secrets this server accepts: those it is configured with, minus the ones a newer
configuration of the deployment retired (db/jwt_keys.py says when a secret is retired).

Nodes of one deployment may briefly run different `CARIOS_JWT_SECRET` values (a rolling
restart). Once a node starts without an older secret, every node refuses that secret's tokens
and closes the sockets they opened, instead of only the restarted node.
"""

from __future__ import annotations

from cariosan.db import jwt_keys as rows
from cariosan.db.pool import Database
from cariosan.domain.tokens import fingerprint
from cariosan.obs.logging import get_logger

log = get_logger("cariosan.auth")


class KeyRing:
    def __init__(self, current: str, previous: str | None) -> None:
        self._secrets = [s for s in (current, previous) if s]
        self._fingerprints = {s: fingerprint(s) for s in self._secrets}
        self._retired: frozenset[str] = frozenset()

    def accepted(self) -> list[str]:
        """The configured secrets not retired, the current one first."""
        return [s for s in self._secrets if self._fingerprints[s] not in self._retired]

    def is_retired(self, key_id: str) -> bool:
        return key_id in self._retired

    async def register(self, database: Database) -> None:
        """At boot: record this server's secrets (retiring older ones), then read the state."""
        if not self._secrets:
            return
        current = self._fingerprints[self._secrets[0]]
        previous = [self._fingerprints[s] for s in self._secrets[1:]]
        async with database.connection() as conn:
            await rows.register(conn, current, previous[0] if previous else None)
        await self.refresh(database)
        if self.is_retired(current):
            log.error(
                "jwt_secret_retired",
                message="CARIOS_JWT_SECRET was replaced by a newer secret on another server of "
                "this deployment: tokens it signs are refused; start with the current secret",
            )

    async def refresh(self, database: Database) -> bool:
        """Read which secrets are retired; True when that changed."""
        async with database.connection() as conn:
            retired = await rows.retired(conn)
        changed = retired != self._retired
        self._retired = retired
        return changed
