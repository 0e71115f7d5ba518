"""The DataManager's projections: supervised folds, status, rebuild, replay.

The asynchronous projections (``workflows`` and ``streams`` by default,
and any added with :meth:`Projections.add`) each run as a
``ProjectionActor`` under the ``projections`` supervisor, itself a child
of the system supervisor. A projection keeps its checkpoint in the store,
in the transaction of each fold, so an actor restarted after a failure
goes on from the checkpoint: no event is folded twice or skipped. The
inline ``records`` projection is attached by the reader (see ``_views``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pykka

from actors._errors import ActorError
from actors._supervisor import (
    ChildHandle,
    FailureHook,
    RestartPolicy,
    Scheduler,
    Supervisor,
    Worker,
)
from eventstore import EventStore, MemoryEventStore
from projections import (
    ParkedEvent,
    Projection,
    ProjectionActor,
    ProjectionStatus,
    RecordsView,
    StreamsView,
    WorkflowsView,
    builtin_projections,
    parked_events,
    projection_named,
    rebuild,
    replay,
    retry_parked,
    status,
    wait_for_checkpoint,
)

if TYPE_CHECKING:
    from actors._datamanager import DataManager

__all__ = ["ASYNC_PROJECTIONS", "Projections", "SupervisedProjectionActor"]

logger = logging.getLogger(__name__)

ASYNC_PROJECTIONS = ("streams", "workflows")
_GATHER_S = 0.05
INLINE = "records"


class SupervisedProjectionActor(ProjectionActor):
    """A ``ProjectionActor`` that reports its failures to its supervisor."""

    def __init__(
        self,
        handle: ChildHandle,
        on_failure: FailureHook,
        store: EventStore,
        projection: Projection,
        **options: Any,
    ) -> None:
        self.gather_s = float(options.pop("gather_s", _GATHER_S))
        super().__init__(store, projection, **options)
        self.handle = handle
        self._report = on_failure

    def step(self) -> int:
        """Fold what committed since the last step, then let more gather.

        Folding in larger batches costs the writer fewer transactions: after
        a batch smaller than ``batch_size``, the actor waits ``gather_s``.
        """
        folded = super().step()
        if 0 < folded < self.batch_size and self.gather_s > 0:
            time.sleep(self.gather_s)
        return folded

    def on_start(self) -> None:
        """Follow the log from the checkpoint; a failure to is reported too."""
        try:
            super().on_start()
        except Exception as error:
            self.actor_stopped.set()
            self._report(error)
            raise

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: Any,
    ) -> None:
        """Tell the supervisor; its inbox holds only its own ``step``."""
        del exception_type, traceback
        logger.error("projection %s failed: %r", self.projection.name, exception_value)
        if self._subscription is not None:
            self._subscription.close()
        self._report(exception_value or ActorError("unknown failure"))


class Projections:
    """Status, rebuild, replay and supervision of a DataManager's projections.

    Reach it as ``dm.projections``. Every method that reads or writes the
    store runs off the event loop.
    """

    def __init__(
        self,
        manager: DataManager,
        *,
        names: Sequence[str] = ASYNC_PROJECTIONS,
        policy: RestartPolicy | None = None,
        scheduler: Scheduler | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self._manager = manager
        self._poll_s = poll_s
        self._running: dict[str, Projection] = {}
        self.supervisor = Supervisor("projections", policy=policy, scheduler=scheduler)
        for name in names:
            if name == INLINE:
                raise ActorError(
                    f"projection {INLINE!r} runs inline in the DataManager; "
                    "it cannot run as an asynchronous projection too"
                )
            self.add(projection_named(name))

    def add(self, projection: Projection, **options: Any) -> None:
        """Run ``projection`` as a supervised actor (now, or when started).

        Args:
            projection: The projection; its name must be new.
            options: ``ProjectionActor`` options (``poll_s``, ``batch_size``,
                ``max_attempts``, ...).

        Raises:
            ActorError: If a projection of that name runs already.

        """
        name = projection.name
        if name in self._running or name == INLINE:
            raise ActorError(f"projection {name!r} runs already")
        options.setdefault("poll_s", self._poll_s)
        manager = self._manager

        def factory(
            handle: ChildHandle, on_failure: FailureHook
        ) -> pykka.ActorRef[Any]:
            return SupervisedProjectionActor.start(
                handle, on_failure, manager.store, projection, **options
            )

        self.supervisor.add_child(Worker(name, factory))
        self._running[name] = projection

    @property
    def names(self) -> list[str]:
        """Every projection the DataManager keeps: ``records``, then the rest."""
        return [INLINE, *self._running]

    def _projection(self, name: str) -> Projection:
        if name == INLINE:
            return builtin_projections()[INLINE]
        found = self._running.get(name)
        if found is None:
            return projection_named(name)
        return found

    # -- readers ----------------------------------------------------------

    @property
    def records(self) -> RecordsView:
        """The ``records`` view."""
        return RecordsView(self._manager.store)

    @property
    def workflows(self) -> WorkflowsView:
        """The ``workflows`` view."""
        return WorkflowsView(self._manager.store)

    @property
    def streams(self) -> StreamsView:
        """The ``streams`` view."""
        return StreamsView(self._manager.store)

    # -- operations -------------------------------------------------------

    async def status(self, name: str | None = None) -> list[ProjectionStatus]:
        """The status of projection ``name``, or of every one."""
        store = self._manager.store
        names = self.names if name is None else [self._projection(name).name]
        return await asyncio.to_thread(lambda: [status(store, n) for n in names])

    async def wait(
        self,
        names: Iterable[str] | None = None,
        *,
        position: int | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        """Wait until the projections have folded ``position`` (the head).

        Raises:
            TimeoutError: If one has not after ``timeout_s``.

        """
        store = self._manager.store
        chosen = self.names if names is None else list(names)

        def wait_all() -> None:
            target = store.head_position() if position is None else position
            for name in chosen:
                wait_for_checkpoint(store, name, target, timeout_s=timeout_s)

        await asyncio.to_thread(wait_all)

    async def rebuild(self, name: str) -> int:
        """Rebuild the view of ``name`` from the log, then swap it in.

        Writes go on meanwhile (see ``projections.rebuild``). Returns the
        new view's checkpoint.
        """
        projection = self._projection(name)
        return await asyncio.to_thread(rebuild, self._manager.store, projection)

    async def replay(
        self, to_position: int, names: Iterable[str] | None = None
    ) -> MemoryEventStore:
        """The views as of ``to_position``, folded into a temporary store.

        Read the result with ``RecordsView(...)``, ``WorkflowsView(...)``...
        """
        chosen = [self._projection(n) for n in (names or builtin_projections())]
        store = self._manager.store
        return await asyncio.to_thread(
            lambda: replay(store, chosen, to_position=to_position)
        )

    async def parked(self, name: str) -> list[ParkedEvent]:
        """The events the handlers of ``name`` could not fold."""
        store = self._manager.store

        def read() -> list[ParkedEvent]:
            with store.read_views() as reader:
                return parked_events(reader, name)

        return await asyncio.to_thread(read)

    async def retry_parked(self, name: str) -> list[ParkedEvent]:
        """Fold the parked events of ``name`` again; return those still parked."""
        projection = self._projection(name)
        return await asyncio.to_thread(retry_parked, self._manager.store, projection)
