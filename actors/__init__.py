"""Supervised actors and the asyncio API of actorlog."""

import logging

from actors._collection import CollectionActor, CollectionConfig
from actors._data import process_data, transform, validate
from actors._datamanager import Command, DataManager, DataSource, Middleware
from actors._errors import (
    ActorError,
    CommandTimeoutError,
    ConcurrencyError,
    NotFoundError,
    UnknownDataSourceError,
    ValidationError,
)
from actors._reader import ActorReader, RecordReader
from actors._records import Record
from actors._replies import FutureReply, LoopReply, Reply
from actors._supervisor import (
    ChildHandle,
    RestartPolicy,
    Strategy,
    SupervisedActor,
    Supervisor,
    SupervisorGaveUpError,
    ThreadScheduler,
    Worker,
)
from actors._transaction import Transaction

__all__ = [
    "ActorError",
    "ActorReader",
    "ChildHandle",
    "CollectionActor",
    "CollectionConfig",
    "Command",
    "CommandTimeoutError",
    "ConcurrencyError",
    "DataManager",
    "DataSource",
    "FutureReply",
    "LoopReply",
    "Middleware",
    "NotFoundError",
    "Record",
    "RecordReader",
    "Reply",
    "RestartPolicy",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SupervisorGaveUpError",
    "ThreadScheduler",
    "Transaction",
    "UnknownDataSourceError",
    "ValidationError",
    "Worker",
    "process_data",
    "transform",
    "validate",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
