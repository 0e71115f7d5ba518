import actors
import eventstore
import projections


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions.
    if name.isupper():
        return 0, name
    return (1 if name[0].isupper() else 2), name


def test_each_package_exports_a_sorted_surface() -> None:
    for package in (actors, eventstore, projections):
        assert list(package.__all__) == sorted(package.__all__, key=_isort_key)
        for name in package.__all__:
            assert hasattr(package, name), f"{package.__name__}.{name}"


def test_the_eventstore_surface_is_pinned() -> None:
    assert set(eventstore.__all__) >= {
        "ANY",
        "NO_STREAM",
        "ConcurrencyError",
        "EventStore",
        "LmdbEventStore",
        "MemoryEventStore",
        "NewEvent",
        "StoredEvent",
    }
