"""Supervised actors and the asyncio API of actorlog."""

import logging

from actors._conflicts import (
    CONFLICT_STRATEGIES,
    ConflictStrategy,
    CustomStrategy,
    Resolution,
    Version,
    check_strategy,
    merge_data,
    resolve,
)
from actors._locks import (
    Lease,
    LeaseLostError,
    LeaseManager,
    LockError,
    LockTimeoutError,
)
from actors._sync import (
    StoreEndpoint,
    SyncConnectionError,
    SyncEndpoint,
    SyncError,
    SyncRefusedError,
    SyncReport,
    run_session,
    serve_sessions,
    sync_in_process,
)
from actors._sync_live import Replicator
from actors._sync_ws import SyncServer, connect_websocket, mount_sync, sync_websocket

__all__ = [
    "CONFLICT_STRATEGIES",
    "ConflictStrategy",
    "CustomStrategy",
    "Lease",
    "LeaseLostError",
    "LeaseManager",
    "LockError",
    "LockTimeoutError",
    "Replicator",
    "Resolution",
    "StoreEndpoint",
    "SyncConnectionError",
    "SyncEndpoint",
    "SyncError",
    "SyncRefusedError",
    "SyncReport",
    "SyncServer",
    "Version",
    "check_strategy",
    "connect_websocket",
    "merge_data",
    "mount_sync",
    "resolve",
    "run_session",
    "serve_sessions",
    "sync_in_process",
    "sync_websocket",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
