"""The embedded store: a dict in this process, used when ``LDENSF_REDIS_URL`` is unset.

Same semantics as the Redis store; state lives only as long as the process (and is not shared with
other worker processes, so ``ldensf serve --workers`` needs Redis)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from service.stores.base import Fields, SessionStore, new_generation


@dataclass
class _Entry:
    model: str
    expires_at: float
    fields: dict[str, bytes] = field(default_factory=dict)


class MemoryStore(SessionStore):
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._expired_unswept: list[str] = []
        self._generation = new_generation()  # the embedded store's data lives as long as this object
        self._indexes: dict[str, dict[str, float]] = {}

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= time.monotonic():
            del self._entries[key]
            self._expired_unswept.append(key)
            return None
        return entry

    async def create(self, key: str, model: str, fields: Fields, ttl_s: int) -> bool:
        if self._live(key) is not None:
            return False
        self._entries[key] = _Entry(model, time.monotonic() + ttl_s, dict(fields))
        return True

    async def read(self, key: str, names: Sequence[str]) -> tuple[int, list[bytes | None]] | None:
        entry = self._live(key)
        if entry is None:
            return None
        return int(entry.fields["version"]), [entry.fields.get(n) for n in names]

    async def compare_and_set(
        self,
        key: str,
        model: str,
        expected_version: int,
        fields: Fields,
        ttl_s: int,
        delete: Sequence[str] = (),
    ) -> bool | None:
        entry = self._live(key)
        if entry is None:
            return None
        if entry.fields.get("version") != str(expected_version).encode():
            return False
        for name in delete:
            entry.fields.pop(name, None)
        entry.fields.update(fields)
        entry.expires_at = time.monotonic() + ttl_s
        return True

    async def delete(self, key: str, model: str) -> bool:
        return self._live(key) is not None and self._entries.pop(key, None) is not None

    async def active_sessions(self, model: str) -> int:
        for key in list(self._entries):
            self._live(key)
        return sum(1 for e in self._entries.values() if e.model == model)

    async def sweep_expired(self, models: Sequence[str]) -> int:
        for key in list(self._entries):
            self._live(key)
        count = len(self._expired_unswept)
        self._expired_unswept.clear()
        return count

    async def index_members(self, index: str) -> dict[str, float]:
        return dict(self._indexes.get(index, {}))

    async def index_put(self, index: str, members: Mapping[str, float]) -> None:
        self._indexes.setdefault(index, {}).update(members)

    async def index_remove(self, index: str, members: Sequence[str]) -> None:
        for member in members:
            self._indexes.get(index, {}).pop(member, None)

    async def exists(self, keys: Sequence[str]) -> list[bool]:
        return [self._live(key) is not None for key in keys]

    async def generation(self) -> str:
        return self._generation

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
