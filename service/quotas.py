"""Per-key quotas (DESIGN.md section 6, issue 15): sessions and stored bytes per API key, checked at
creation against an index in the store (so every replica sees the same count), and updates per second
per key, a token bucket in each process. Each session's history is bounded in bytes, so its stored size
is known when it is created.

The index (``<prefix>:tenant:<tenant>``) holds ``<session id>|<bytes>`` scored by an expiry time set at
creation; a member whose score has passed is checked against the store and dropped if its session is
gone, or re-scored if it is still updated. Concurrent creations can overshoot a quota by the number in
flight; it is a bound on cost, not an exact count.

Without ``LDENSF_API_KEYS`` every caller is the one tenant ``public``: there is no key to be fair
between, so no per-key quota applies (the service-wide bounds do: shedding by wait, body and query
limits, history bytes).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from service.auth import PUBLIC_TENANT
from service.errors import Busy
from service.settings import Settings
from service.stores import SessionStore, session_key

# What a step's history entry and a session's fixed state take besides the float32 ensembles: the
# stored answer (JSON), and the metadata and torch generator state (5 kB).
RESULT_BYTES = 2048
FIXED_BYTES = 8192


def history_steps(settings: Settings, ensemble_size: int, dim: int) -> int:
    """Past steps kept for a session: LDENSF_HISTORY_STEPS, fewer when they would pass
    LDENSF_MAX_HISTORY_BYTES."""
    step_bytes = ensemble_size * dim * 4 + RESULT_BYTES
    return max(1, min(settings.history_steps, settings.max_history_bytes // step_bytes))


def session_bytes(settings: Settings, ensemble_size: int, dim: int, lstm_values: int) -> int:
    """The most a session can take in the store: its state and its bounded history."""
    ensemble = ensemble_size * dim * 4
    state = FIXED_BYTES + ensemble + 2 * lstm_values * 4
    return state + history_steps(settings, ensemble_size, dim) * (ensemble + RESULT_BYTES)


@dataclass
class _Bucket:
    tokens: float
    at: float


class Quotas:
    def __init__(self, settings: Settings, store: SessionStore) -> None:
        self.settings = settings
        self.store = store
        self._buckets: dict[str, _Bucket] = {}

    def _index(self, tenant: str) -> str:
        return f"{self.settings.redis_prefix}:tenant:{tenant}"

    async def _live(self, tenant: str) -> dict[str, float]:
        """The tenant's live sessions (member -> expiry), stale members pruned or re-scored."""
        index = self._index(tenant)
        members = await self.store.index_members(index)
        now = time.time()
        stale = [m for m, expires in members.items() if expires <= now]
        if stale:
            keys = [session_key(self.settings.redis_prefix, tenant, m.split("|")[0]) for m in stale]
            alive = await self.store.exists(keys)
            gone = [m for m, a in zip(stale, alive, strict=True) if not a]
            kept = {m: now + self.settings.session_ttl_s for m, a in zip(stale, alive, strict=True) if a}
            await self.store.index_remove(index, gone)
            await self.store.index_put(index, kept)
            members = {m: kept.get(m, e) for m, e in members.items() if m not in gone}
        return members

    async def admit_session(self, tenant: str, size: int) -> None:
        """429 when one more session of ``size`` bytes would pass the key's quotas."""
        if tenant == PUBLIC_TENANT:
            return
        live = await self._live(tenant)
        used = sum(int(m.split("|")[1]) for m in live)
        retry = {"Retry-After": str(max(1, math.ceil(min(live.values(), default=0) - time.time())))}
        limit = self.settings.max_sessions_per_key
        if len(live) >= limit:
            raise Busy(
                f"this API key has {len(live)} live sessions, its quota (LDENSF_MAX_SESSIONS_PER_KEY = "
                f"{limit}); delete sessions you no longer need (DELETE /v1/sessions/{{id}}) or wait for one "
                "to expire",
                headers=retry,
            )
        budget = self.settings.max_stored_bytes_per_key
        if used + size > budget:
            raise Busy(
                f"a session of this size may take {size} bytes in the store and this API key's sessions "
                f"already may take {used} of its {budget} (LDENSF_MAX_STORED_BYTES_PER_KEY); delete "
                "sessions, or create a smaller ensemble",
                headers=retry,
            )

    async def created(self, tenant: str, session_id: str, size: int) -> None:
        if tenant == PUBLIC_TENANT:
            return
        expires = time.time() + self.settings.session_ttl_s
        await self.store.index_put(self._index(tenant), {f"{session_id}|{size}": expires})

    async def deleted(self, tenant: str, session_id: str, size: int) -> None:
        if tenant == PUBLIC_TENANT:
            return
        await self.store.index_remove(self._index(tenant), [f"{session_id}|{size}"])

    def admit_update(self, tenant: str) -> None:
        """429 when the key posts faster than LDENSF_MAX_UPDATES_PER_S_PER_KEY (in this process)."""
        if tenant == PUBLIC_TENANT:
            return
        rate = self.settings.max_updates_per_s_per_key
        now = time.monotonic()
        bucket = self._buckets.setdefault(tenant, _Bucket(tokens=rate, at=now))
        bucket.tokens = min(rate, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1:
            raise Busy(
                f"this API key posts more than {rate:g} updates per second, its quota on this replica "
                "(LDENSF_MAX_UPDATES_PER_S_PER_KEY); retry after the Retry-After delay",
                headers={"Retry-After": str(max(1, math.ceil((1 - bucket.tokens) / rate)))},
            )
        bucket.tokens -= 1
