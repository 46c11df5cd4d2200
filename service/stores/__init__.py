"""Session state stores: Redis (several processes, survives restarts) and an embedded in-process one."""

from service.stores.base import SessionStore, session_key
from service.stores.memory_store import MemoryStore

__all__ = ["MemoryStore", "SessionStore", "open_store", "session_key"]


def open_store(redis_url: str | None, *, prefix: str, timeout_s: float) -> SessionStore:
    """The Redis store for ``redis_url``, or the embedded store when it is None."""
    if redis_url is None:
        return MemoryStore()
    from service.stores.redis_store import RedisStore

    return RedisStore(redis_url, prefix=prefix, timeout_s=timeout_s)
