"""The Redis store (redis-py asyncio with the hiredis parser).

One hash per session under a hash-tagged key; creation and compare-and-set are Lua scripts, so a
write is all or nothing and two processes can never both advance one version. A sorted set per model
(``<prefix>:active:<model>``, member = session key, score = expiry time in ms) counts live sessions
and lets :meth:`sweep_expired` count each expiry exactly once across processes. Any Redis failure is
raised as :class:`service.errors.StoreUnavailable` (answered 503).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from service.errors import StoreUnavailable
from service.stores.base import Fields, SessionStore, new_generation

T = TypeVar("T")

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# ARGV: expected version, ttl ms, number of fields to delete, their names, then name/value pairs.
_COMPARE_AND_SET = """
local current = redis.call('HGET', KEYS[1], 'version')
if current == false then return -1 end
if current ~= ARGV[1] then return 0 end
local n_delete = tonumber(ARGV[3])
if n_delete > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 4, 3 + n_delete)) end
redis.call('HSET', KEYS[1], unpack(ARGV, 4 + n_delete))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_FAILURES = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError, OSError)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore(SessionStore):
    def __init__(self, url: str, *, prefix: str = "ldensf", timeout_s: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
        )
        self._create = self.client.register_script(_CREATE)
        self._cas = self.client.register_script(_COMPARE_AND_SET)

    def _index(self, model: str) -> str:
        return f"{self.prefix}:active:{model}"

    async def _call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except _FAILURES as err:
            raise StoreUnavailable(
                f"the session store (Redis) is unavailable ({what}: {type(err).__name__}); nothing was "
                "changed, retry shortly"
            ) from None

    async def _index_add(self, model: str, key: str, ttl_s: int) -> None:
        await self.client.zadd(self._index(model), {key: time.time() * 1000 + ttl_s * 1000})

    async def create(self, key: str, model: str, fields: Fields, ttl_s: int) -> bool:
        args: list[Any] = [ttl_s * 1000]
        for name, value in fields.items():
            args += [name, value]

        async def run() -> bool:
            created = bool(await self._create(keys=[key], args=args))
            if created:
                await self._index_add(model, key, ttl_s)
            return created

        return await self._call("create", run)

    async def read(self, key: str, names: Sequence[str]) -> tuple[int, list[bytes | None]] | None:
        async def run() -> tuple[int, list[bytes | None]] | None:
            values = await self.client.hmget(key, ["version", *names])
            if values[0] is None:
                return None
            return int(values[0]), [
                v if v is None or isinstance(v, bytes) else v.encode() for v in values[1:]
            ]

        return await self._call("read", run)

    async def compare_and_set(
        self,
        key: str,
        model: str,
        expected_version: int,
        fields: Fields,
        ttl_s: int,
        delete: Sequence[str] = (),
    ) -> bool | None:
        args: list[Any] = [str(expected_version), ttl_s * 1000, len(delete), *delete]
        for name, value in fields.items():
            args += [name, value]

        async def run() -> bool | None:
            # One round trip: the index refresh rides along. XX only moves an existing entry, so a
            # session deleted meanwhile is not put back; refreshing a live one is harmless.
            async with self.client.pipeline(transaction=False) as pipe:
                await self._cas(keys=[key], args=args, client=pipe)
                pipe.zadd(self._index(model), {key: time.time() * 1000 + ttl_s * 1000}, xx=True)
                outcome, _ = await pipe.execute()
            return None if int(outcome) < 0 else int(outcome) == 1

        return await self._call("write", run)

    async def delete(self, key: str, model: str) -> bool:
        async def run() -> bool:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.delete(key)
                pipe.zrem(self._index(model), key)
                deleted, _ = await pipe.execute()
            return bool(deleted)

        return await self._call("delete", run)

    async def active_sessions(self, model: str) -> int:
        return await self._call(
            "count", lambda: self.client.zcount(self._index(model), f"({time.time() * 1000}", "+inf")
        )

    async def sweep_expired(self, models: Sequence[str]) -> int:
        async def run() -> int:
            now = time.time() * 1000
            removed = 0
            for model in models:
                expired = await self.client.zrangebyscore(self._index(model), "-inf", now)
                if expired:
                    # ZREM answers how many it removed, so concurrent sweepers never count twice.
                    removed += int(await self.client.zrem(self._index(model), *expired))
            return removed

        return await self._call("sweep", run)

    async def index_members(self, index: str) -> dict[str, float]:
        async def run() -> dict[str, float]:
            pairs: list[Any] = await self.client.zrange(index, 0, -1, withscores=True)
            return {_text(pair[0]): float(pair[1]) for pair in pairs}

        return await self._call("index", run)

    async def index_put(self, index: str, members: Mapping[str, float]) -> None:
        if members:
            await self._call("index", lambda: self.client.zadd(index, dict(members)))

    async def index_remove(self, index: str, members: Sequence[str]) -> None:
        if members:
            await self._call("index", lambda: self.client.zrem(index, *list(members)))

    async def exists(self, keys: Sequence[str]) -> list[bool]:
        async def run() -> list[bool]:
            # one EXISTS per key: the keys hash to different cluster slots
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.exists(key)
                return [bool(n) for n in await pipe.execute()]

        return await self._call("exists", run)

    async def generation(self) -> str:
        async def run() -> str:
            # SET NX: of the processes that find the marker gone, the first one's token is everyone's.
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.set(f"{self.prefix}:generation", new_generation(), nx=True)
                pipe.get(f"{self.prefix}:generation")
                _, token = await pipe.execute()
            return token.decode() if isinstance(token, bytes) else str(token)

        return await self._call("generation", run)

    async def ping(self) -> None:
        await self._call("ping", self.client.ping)

    async def close(self) -> None:
        await self.client.aclose()
