"""Sessions: create, read, delete, and assimilate one observation with the rules of DESIGN.md section 6.

Steps come in order (0, 1, 2, ...). Re-posting an assimilated step with the same payload returns the
stored answer; a different payload for it, or a step that skips ahead, is 409 naming the step
expected. Within a process, requests for one session are serialised by a lock, so simultaneous
re-posts assimilate once; across processes the store's compare-and-set on the version lets exactly
one writer win and the others answer from what it stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
import struct
import time
from typing import Any

import numpy as np
import torch

from service.batcher import MicroBatcher, update_cost
from service.engine import UpdateInput, UpdateOutput, effective_filter, ensf_config, noise_factor
from service.errors import BadInput, Conflict, NotFound, ServiceError, StateLost, TooLarge
from service.lainr_engine import LainrUpdateInput, lainr_filter
from service.lainr_runtime import LainrRuntime
from service.locks import KeyedLocks
from service.metrics import ENSEMBLE_SPREAD, FLAGGED_ANSWERS, OBSERVATIONS, STORE_DATA_LOST, UPDATE_DURATION
from service.quotas import Quotas, history_steps, session_bytes
from service.runtime import AnyRuntime, ModelRuntime
from service.schemas import ObservationPost, SessionCreate
from service.settings import Settings
from service.state import (
    STATE_FIELDS,
    SessionMeta,
    SessionState,
    ensemble_field,
    generator_state,
    result_field,
)
from service.stores import SessionStore, session_key
from service.stores.base import GENERATION_CHARS

log = logging.getLogger("ldensf.service")

SESSION_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# A session id: the store generation it was created in, a tag of its model (so that errors during a
# store outage are counted under the model), then 144 random bits.
MODEL_TAG_CHARS = 4
SESSION_ID_LENGTH = GENERATION_CHARS + MODEL_TAG_CHARS + 32


def model_tag(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:MODEL_TAG_CHARS]


def parameter_summary(runtime: AnyRuntime, ensemble: np.ndarray) -> dict[str, dict[str, float]]:
    """Ensemble mean and std (ddof 1) of each parameter, physical units."""
    u = runtime.unscale_params(ensemble[:, runtime.manifest.d_s :])
    mean, std = u.mean(axis=0), u.std(axis=0, ddof=1)
    return {
        name: {"mean": float(mean[j]), "std": float(std[j])}
        for j, name in enumerate(runtime.manifest.parameters)
    }


# A mean within this fraction of its trained range's width of a bound is flagged parameter_at_bound.
AT_BOUND_FRACTION = 0.02


def validity_flags(runtime: AnyRuntime, ensemble: np.ndarray, observed: bool) -> list[str]:
    """The answer's diagnostics.flags: no_observations, parameter_at_bound, outside_training_range."""
    flags = [] if observed else ["no_observations"]
    if isinstance(runtime, LainrRuntime):
        return flags  # no parameters
    m = runtime.manifest
    mean = runtime.unscale_params(ensemble[:, m.d_s :]).mean(axis=0)
    lo, hi = np.asarray(m.parameter_bounds, dtype=np.float64).T
    margin = AT_BOUND_FRACTION * (hi - lo)
    if np.any((mean <= lo + margin) | (mean >= hi - margin)):
        flags.append("parameter_at_bound")
    if np.any((mean < lo) | (mean > hi)):
        flags.append("outside_training_range")
    return flags


def payload_digest(y: np.ndarray, noise_level: float) -> str:
    """Identifies a posted observation whatever its form (list or mapping)."""
    return hashlib.sha256(y.tobytes() + struct.pack("<d", noise_level)).hexdigest()


class SessionManager:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        models: dict[str, AnyRuntime],
        batcher: MicroBatcher,
    ) -> None:
        self.settings = settings
        self.store = store
        self.models = models
        self.batcher = batcher
        self.locks = KeyedLocks()
        self.quotas = Quotas(settings, store)
        self.generation: str | None = None  # the store generation this process last saw
        self.data_lost_at: float | None = None  # when this process saw the store lose its data
        self._model_by_tag = {model_tag(name): name for name in models}

    # ------------------------------------------------------------------------------ lookups

    def key(self, tenant: str, session_id: str) -> str:
        return session_key(self.settings.redis_prefix, tenant, session_id)

    def runtime(self, name: str) -> AnyRuntime:
        runtime = self.models.get(name)
        if runtime is None:
            raise NotFound(f"unknown model {name!r}; this server has {sorted(self.models)} (GET /v1/models)")
        return runtime

    def not_found(self, session_id: str) -> NotFound:
        return NotFound(
            f"session {session_id!r} not found: the id is unknown, the session was deleted, or it expired "
            f"after {self.settings.session_ttl_s} s without updates (sessions belong to the API key that "
            "created them); create a new one with POST /v1/sessions"
        )

    async def store_generation(self) -> str:
        """The store's generation marker; a change since the last look means the store lost its data."""
        current = await self.store.generation()
        if self.generation is not None and current != self.generation:
            STORE_DATA_LOST.inc()
            self.data_lost_at = time.time()
            log.error(
                "the session store lost its data: generation %s replaced by %s (a Redis restart without "
                "persistence, or a flush); sessions created before are gone",
                self.generation,
                current,
            )
        self.generation = current
        return current

    def model_hint(self, session_id: str) -> str:
        """The model a session id was created for, read from the id alone (no store access)."""
        if len(session_id) != SESSION_ID_LENGTH:
            return "unknown"
        return self._model_by_tag.get(session_id[GENERATION_CHARS:][:MODEL_TAG_CHARS], "unknown")

    async def missing(self, session_id: str) -> ServiceError:
        """404 for an id the store does not hold, 410 when it was created in an earlier store generation."""
        if self.model_hint(session_id) != "unknown":
            generation = await self.store_generation()
            created_in = session_id[:GENERATION_CHARS]
            if created_in != generation:
                return StateLost(
                    f"session {session_id!r} was lost: the session store lost its data after the session "
                    f"was created (store generation {created_in}, now {generation}: a Redis restart "
                    "without persistence, or a flush). Its state cannot be recovered; create a new "
                    "session with POST /v1/sessions and post from step 0"
                )
        return self.not_found(session_id)

    async def load(
        self, tenant: str, session_id: str, extra: tuple[str, ...] = (), *, usable: bool = True
    ) -> SessionState:
        """The stored session; with ``usable``, 410 for one whose state is not finite."""
        if not (0 < len(session_id) <= 64 and set(session_id) <= SESSION_ID_CHARS):
            raise self.not_found(session_id)
        found = await self.store.read(self.key(tenant, session_id), [*STATE_FIELDS, *extra])
        if found is None:
            raise await self.missing(session_id)
        version, values = found
        state = SessionState.from_fields(version, values[: len(STATE_FIELDS)])
        state.extra = {
            name: value
            for name, value in zip(extra, values[len(STATE_FIELDS) :], strict=True)
            if value is not None
        }
        if usable and not all(np.isfinite(a).all() for a in (state.ensemble, state.h, state.c)):
            # only a release before the guard in _store_update could have written it
            raise StateLost(
                f"session {session_id!r} cannot continue: its stored state holds NaN or inf, written by "
                "an older release of this service (settings now outside their domains); delete it and "
                "create a new session with POST /v1/sessions"
            )
        return state

    def runtime_of(self, meta: SessionMeta) -> AnyRuntime:
        runtime = self.runtime(meta.model)
        if runtime.version != meta.model_version:
            raise Conflict(
                f"session {meta.session_id!r} runs model {meta.model!r} version {meta.model_version}, but "
                f"this server has version {runtime.version}; create a new session"
            )
        return runtime

    def info(self, state: SessionState) -> dict[str, Any]:
        meta = state.meta
        runtime = self.runtime(meta.model)
        return {
            "session_id": meta.session_id,
            "model": meta.model,
            "model_version": meta.model_version,
            "ensemble_size": meta.ensemble_size,
            "seed": meta.seed,
            "filter": meta.filter,
            "parameter_prior": dict(zip(runtime.manifest.parameters, meta.parameter_prior, strict=True)),
            "step": meta.step,
            "next_step": meta.step + 1,
            "created": meta.created,
            "updated": meta.updated,
            "expires_in_s": max(0, round(meta.updated + self.settings.session_ttl_s - time.time())),
            "parameters": parameter_summary(runtime, state.ensemble),
        }

    # ------------------------------------------------------------------------------ create / delete

    async def create(self, tenant: str, body: SessionCreate) -> dict[str, Any]:
        runtime = self.runtime(body.model)
        size = body.ensemble_size or runtime.manifest.filter_defaults.ensemble_size
        if size > self.settings.max_ensemble:
            raise BadInput(
                f"ensemble_size {size} exceeds this server's limit of {self.settings.max_ensemble} "
                "(LDENSF_MAX_ENSEMBLE)"
            )
        seed = body.seed if body.seed is not None else secrets.randbits(63)
        generator = torch.Generator().manual_seed(seed)
        if isinstance(runtime, LainrRuntime):
            if body.parameter_prior:
                raise BadInput(
                    f"model {runtime.name!r} estimates no parameters (a LAINR model); leave out "
                    "parameter_prior"
                )
            settings = lainr_filter(runtime, body.filter.model_dump())
            bounds: list[tuple[float, float]] = []
            ensemble = runtime.prior_ensemble(size, generator)
            lstm = np.zeros((0, 0), dtype=np.float32)
        else:
            m = runtime.manifest
            settings = effective_filter(runtime, body.filter.model_dump())
            if settings.get("method") is not None:
                raise BadInput(
                    f"filter.method applies to LAINR models; model {runtime.name!r} runs LD-EnSF (EnSF "
                    "settings: eps_a, eps_b, n_steps, scale, prior_score, damping, inflation, rtps)"
                )
            settings.pop("method", None)
            try:
                ensf_config(runtime, settings)
            except ValueError as err:
                raise BadInput(f"filter: {err}") from None
            bounds = self._prior_bounds(runtime, body.parameter_prior)
            lo, hi = np.array(bounds).T
            u = lo + (hi - lo) * torch.rand((size, m.d_u), generator=generator, dtype=torch.float64).numpy()
            # LDNet latents start at s = 0 (the first stored latent is one step in); all spread is in u.
            ensemble = np.concatenate([np.zeros((size, m.d_s)), runtime.scale_params(u)], axis=1)
            lstm = np.zeros((m.graphs.encoder_layers, m.graphs.encoder_hidden), dtype=np.float32)
        size_bytes = session_bytes(self.settings, size, ensemble.shape[1], lstm.size)
        await self.quotas.admit_session(tenant, size_bytes)
        now = time.time()
        generation = await self.store_generation()
        for _ in range(3):
            session_id = generation + model_tag(runtime.name) + secrets.token_urlsafe(24)
            meta = SessionMeta(
                session_id=session_id,
                model=runtime.name,
                model_version=runtime.version,
                ensemble_size=size,
                seed=seed,
                filter=settings,
                parameter_prior=bounds,
                created=now,
                updated=now,
                lstm_shape=(lstm.shape[0], lstm.shape[1]),
            )
            state = SessionState(meta, 0, ensemble.astype(np.float32), lstm, lstm, generator_state(generator))
            key = self.key(tenant, session_id)
            if await self.store.create(key, runtime.name, state.fields(), self.settings.session_ttl_s):
                await self.quotas.created(tenant, session_id, size_bytes)
                return self.info(state)
        raise RuntimeError("could not find an unused session id")  # 2^-144 collisions, three times

    def _prior_bounds(
        self, runtime: ModelRuntime, prior: dict[str, tuple[float, float]] | None
    ) -> list[tuple[float, float]]:
        m = runtime.manifest
        bounds = [tuple(b) for b in m.parameter_bounds]
        if not prior:
            return [(float(lo), float(hi)) for lo, hi in bounds]
        unknown = sorted(set(prior) - set(m.parameters))
        if unknown:
            raise BadInput(f"parameter_prior names unknown parameter(s) {unknown}; model has {m.parameters}")
        result = []
        for name, (lo_m, hi_m) in zip(m.parameters, bounds, strict=True):
            lo, hi = prior.get(name, (lo_m, hi_m))
            if not lo < hi:
                raise BadInput(
                    f"parameter_prior[{name!r}] = [{lo}, {hi}] is empty; give [low, high] with low < high"
                )
            if lo < lo_m or hi > hi_m:
                raise BadInput(
                    f"parameter_prior[{name!r}] = [{lo}, {hi}] leaves the model's trained range "
                    f"[{lo_m}, {hi_m}]"
                )
            result.append((float(lo), float(hi)))
        return result

    async def delete(self, tenant: str, session_id: str) -> None:
        state = await self.load(tenant, session_id, usable=False)
        if not await self.store.delete(self.key(tenant, session_id), state.meta.model):
            raise await self.missing(session_id)
        meta = state.meta
        size = session_bytes(self.settings, meta.ensemble_size, state.ensemble.shape[1], state.h.size)
        await self.quotas.deleted(tenant, session_id, size)

    # ------------------------------------------------------------------------------ observations

    async def observe(
        self, tenant: str, session_id: str, body: ObservationPost
    ) -> tuple[dict[str, Any], bool]:
        """Assimilate ``body``; returns (answer, replayed)."""
        started = time.perf_counter()
        key = self.key(tenant, session_id)
        model = self.model_hint(session_id)
        try:
            self.quotas.admit_update(tenant)
            async with self.locks.hold(key):
                with self.batcher.expecting():
                    state = await self.load(tenant, session_id)
                    model = state.meta.model
                    runtime = self.runtime_of(state.meta)
                    item, digest = self._update_input(runtime, state, body)
                    cost = update_cost(item)
                    if cost > self.settings.max_update_cost:
                        raise TooLarge(
                            f"this update costs {cost} member evaluations (members x observations), "
                            f"over this server's limit of {self.settings.max_update_cost} "
                            "(LDENSF_MAX_UPDATE_COST): post fewer observations per step"
                        )
                    if body.step <= state.meta.step:
                        answer = await self._replay(key, session_id, state.meta.step, body.step, digest)
                        OBSERVATIONS.labels(model, "replayed").inc()
                        return answer, True
                    if body.step != state.meta.step + 1:
                        raise Conflict(
                            f"step {body.step} skips ahead: session {session_id!r} expects step "
                            f"{state.meta.step + 1} next (steps are assimilated in order)"
                        )
                try:
                    output = await self.batcher.submit(runtime, item)
                except (ValueError, torch.linalg.LinAlgError) as err:
                    # the filters' own checks (the batcher ran this item alone): the numbers of this
                    # session and post, not the server, are at fault
                    raise BadInput(
                        f"step {body.step} could not be assimilated with this observation and session "
                        f"{session_id!r}'s filter settings {state.meta.filter} ({err}); nothing was stored. "
                        "Post it with a larger noise_level, or create a session with other filter settings"
                    ) from None
                answer, replayed = await self._store_update(
                    key, session_id, state, runtime, body.step, output, digest
                )
        except ServiceError as err:
            OBSERVATIONS.labels(model, _outcome(err)).inc()
            raise
        except Exception:
            OBSERVATIONS.labels(model, "error").inc()
            raise
        total = time.perf_counter() - started
        if not replayed:
            answer["timings_ms"]["total"] = round(total * 1e3, 3)
            UPDATE_DURATION.labels(model, "total").observe(total)
        OBSERVATIONS.labels(model, "replayed" if replayed else "assimilated").inc()
        return answer, replayed

    def _update_input(
        self, runtime: AnyRuntime, state: SessionState, body: ObservationPost
    ) -> tuple[UpdateInput | LainrUpdateInput, str]:
        """The engine's input for this post and the digest that identifies its payload."""
        if isinstance(runtime, LainrRuntime):
            if body.values is not None:
                raise BadInput(
                    f"model {runtime.name!r} is a LAINR model: post 'observations' as a list of "
                    "{lat, lon, channel, value} (any points), not 'values'"
                )
            obs = runtime.observations(body.observations or [], body.noise_level)
            digest = hashlib.sha256(obs.digest_bytes()).hexdigest()
            return LainrUpdateInput(
                ensemble=state.ensemble,
                observations=obs,
                forecast=body.step > 0,
                rng=state.rng,
                settings=state.meta.filter,
            ), digest
        if body.observations is not None:
            raise BadInput(
                f"model {runtime.name!r} is an LD-EnSF model: post 'values' of its fixed sensors "
                f"(GET /v1/models/{runtime.name}), not 'observations' (or neither, for a forecast-only step)"
            )
        noise_level = body.noise_level or 0.0
        # a forecast-only step's digest is that of no values (its noise_level does not matter)
        y = runtime.observation(body.values) if body.values is not None else None
        noise_std = runtime.latent_noise(noise_level)
        item = UpdateInput(
            y_net=runtime.normalise_observation(y) if y is not None else None,
            noise_std=noise_std,
            noise_factor=noise_factor(state.meta.filter),
            ensemble=state.ensemble,
            h=state.h,
            c=state.c,
            rng=state.rng,
            config=ensf_config(runtime, state.meta.filter),
        )
        if y is None:
            return item, payload_digest(np.zeros(0), 0.0)
        return item, payload_digest(y, noise_level)

    async def _replay(
        self, key: str, session_id: str, current: int, step: int, digest: str
    ) -> dict[str, Any]:
        found = await self.store.read(key, [result_field(step)])
        if found is None:
            raise await self.missing(session_id)
        raw = found[1][0]
        if raw is None:
            raise Conflict(
                f"step {step} is older than the steps this server keeps for a session (at most "
                f"{self.settings.history_steps}, LDENSF_HISTORY_STEPS, within LDENSF_MAX_HISTORY_BYTES); "
                f"session {session_id!r} expects step {current + 1} next"
            )
        stored = json.loads(raw)
        if stored["digest"] != digest:
            raise Conflict(
                f"step {step} was already assimilated with different values or noise level; a re-post must "
                f"repeat the same payload. Session {session_id!r} expects step {current + 1} next"
            )
        answer: dict[str, Any] = stored["answer"]
        return answer

    async def _store_update(
        self,
        key: str,
        session_id: str,
        state: SessionState,
        runtime: AnyRuntime,
        step: int,
        output: UpdateOutput,
        digest: str,
    ) -> tuple[dict[str, Any], bool]:
        model = runtime.name
        ensemble = output.ensemble.astype(np.float32)
        _refuse_non_finite(session_id, step, state.meta.filter, ensemble, output)
        spread = float(np.sqrt(ensemble.var(axis=0, ddof=1).mean()))
        answer: dict[str, Any] = {
            "step": step,
            "parameters": parameter_summary(runtime, ensemble),
            "diagnostics": {
                "spread": spread,
                "innovation": output.innovation,
                "batch_size": output.batch_size,
                **({"n_observations": output.n_observations} if output.n_observations is not None else {}),
                "flags": validity_flags(runtime, ensemble, output.observed),
            },
            "timings_ms": {k: round(v * 1e3, 3) for k, v in output.timings.items()},
        }
        meta = dataclasses.replace(state.meta, step=step, updated=time.time())
        new_state = SessionState(meta, state.version + 1, ensemble, output.h, output.c, output.rng)
        fields = new_state.fields()
        fields[ensemble_field(step)] = fields["ensemble"]
        fields[result_field(step)] = json.dumps({"digest": digest, "answer": answer}).encode()
        old = step - history_steps(self.settings, ensemble.shape[0], ensemble.shape[1])
        delete = [ensemble_field(old), result_field(old)] if old >= 0 else []

        started = time.perf_counter()
        written = await self.store.compare_and_set(
            key, model, state.version, fields, self.settings.session_ttl_s, delete
        )
        store_s = time.perf_counter() - started
        if written is None:
            raise await self.missing(session_id)
        if not written:
            # Another process advanced this session meanwhile: answer as a re-post would.
            return await self._after_lost_race(key, session_id, step, digest), True
        for stage, seconds in output.timings.items():
            UPDATE_DURATION.labels(model, stage).observe(seconds)
        UPDATE_DURATION.labels(model, "store").observe(store_s)
        ENSEMBLE_SPREAD.labels(model).observe(spread)
        for flag in answer["diagnostics"]["flags"]:
            FLAGGED_ANSWERS.labels(model, flag).inc()
        answer = {**answer, "timings_ms": {**answer["timings_ms"], "store": round(store_s * 1e3, 3)}}
        return answer, False

    async def _after_lost_race(self, key: str, session_id: str, step: int, digest: str) -> dict[str, Any]:
        found = await self.store.read(key, ["meta"])
        if found is None or found[1][0] is None:
            raise await self.missing(session_id)
        current = SessionMeta.from_bytes(found[1][0]).step
        if current < step:
            raise Conflict(f"session {session_id!r} changed while step {step} was assimilated; post it again")
        return await self._replay(key, session_id, current, step, digest)


def _refuse_non_finite(
    session_id: str, step: int, settings: dict[str, Any], ensemble: np.ndarray, output: UpdateOutput
) -> None:
    """A last guard: an update that produced NaN or inf is never stored (the session stays as it was)."""
    arrays = (ensemble, output.h, output.c, np.array([output.innovation]))
    if all(np.isfinite(a).all() for a in arrays) and np.isfinite(ensemble.var(axis=0, ddof=1)).all():
        return
    raise BadInput(
        f"step {step} gave non-finite numbers with this observation and session {session_id!r}'s filter "
        f"settings {settings}; nothing was stored. Post the step again with a larger noise_level or "
        "values nearer the model's range, or create a session with other filter settings"
    )


def _outcome(err: ServiceError) -> str:
    return {409: "conflict", 429: "throttled", 503: "unavailable"}.get(err.status, "rejected")


async def store_roundtrip(manager: SessionManager, tenant: str, session_id: str) -> dict[str, Any]:
    """The Redis work of one update without the model: the same reads and the same writes of the same
    bytes (state, history entry, answer). ``ldensf bench service`` measures its throughput as the floor
    that an update's throughput is compared with."""
    key = manager.key(tenant, session_id)
    async with manager.locks.hold(key):
        state = await manager.load(tenant, session_id)
        runtime = manager.runtime_of(state.meta)
        step = state.meta.step + 1
        answer = {
            "step": step,
            "parameters": parameter_summary(runtime, state.ensemble),
            "diagnostics": {"spread": 0.0, "innovation": 0.0, "batch_size": 1},
            "timings_ms": {"encode": 0.0, "forecast": 0.0, "ensf": 0.0},
        }
        meta = dataclasses.replace(state.meta, step=step, updated=time.time())
        fields = SessionState(meta, state.version + 1, state.ensemble, state.h, state.c, state.rng).fields()
        fields[ensemble_field(step)] = fields["ensemble"]
        fields[result_field(step)] = json.dumps({"digest": "0" * 64, "answer": answer}).encode()
        old = step - history_steps(manager.settings, state.ensemble.shape[0], state.ensemble.shape[1])
        delete = [ensemble_field(old), result_field(old)] if old >= 0 else []
        written = await manager.store.compare_and_set(
            key, runtime.name, state.version, fields, manager.settings.session_ttl_s, delete
        )
        if not written:
            raise Conflict("session changed meanwhile")
        return answer
