"""What a session store offers: one hash of named byte fields per session, created once, read by field
name, and replaced atomically by a compare-and-set on its ``version`` field, with a TTL refreshed on
every write. A store also counts the live sessions of each model and the sessions that expired."""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

Fields = Mapping[str, bytes]


def session_key(prefix: str, tenant: str, session_id: str) -> str:
    # The hash tag covers tenant and session, so a Redis Cluster spreads sessions over slots.
    return f"{prefix}:{{{tenant}:{session_id}}}"


GENERATION_CHARS = 8


def new_generation() -> str:
    """A generation token: letters and digits only, so it can start a session id."""
    return secrets.token_hex(GENERATION_CHARS // 2)


class SessionStore(ABC):
    @abstractmethod
    async def create(self, key: str, model: str, fields: Fields, ttl_s: int) -> bool:
        """Store a new session; False if ``key`` already exists (nothing written)."""

    @abstractmethod
    async def read(self, key: str, names: Sequence[str]) -> tuple[int, list[bytes | None]] | None:
        """(version, the named fields with None for absent ones), or None when the session does not exist."""

    @abstractmethod
    async def compare_and_set(
        self,
        key: str,
        model: str,
        expected_version: int,
        fields: Fields,
        ttl_s: int,
        delete: Sequence[str] = (),
    ) -> bool | None:
        """Write ``fields`` and drop ``delete`` only if the stored ``version`` is ``expected_version``
        (all or nothing). True: written; False: the version moved; None: the session is gone."""

    @abstractmethod
    async def delete(self, key: str, model: str) -> bool:
        """Remove a session; False if it did not exist."""

    @abstractmethod
    async def active_sessions(self, model: str) -> int:
        """Sessions of ``model`` that have not expired."""

    @abstractmethod
    async def sweep_expired(self, models: Sequence[str]) -> int:
        """Forget expired sessions in the per-model counts; returns how many expired since the last sweep
        (each counted once, whichever process sweeps)."""

    @abstractmethod
    async def index_members(self, index: str) -> dict[str, float]:
        """A scored index (a sorted set): member -> score."""

    @abstractmethod
    async def index_put(self, index: str, members: Mapping[str, float]) -> None:
        """Add members to an index, or move their scores."""

    @abstractmethod
    async def index_remove(self, index: str, members: Sequence[str]) -> None: ...

    @abstractmethod
    async def exists(self, keys: Sequence[str]) -> list[bool]:
        """Whether each session key is stored (and not expired)."""

    @abstractmethod
    async def generation(self) -> str:
        """The store's generation marker: a random token written once into an empty store and kept
        for as long as the store keeps its data. A store that lost its data (restarted without
        persistence, flushed) answers a new token, so sessions of the old generation are known lost."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`service.errors.StoreUnavailable` when the store cannot be reached."""

    @abstractmethod
    async def close(self) -> None: ...
