from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors import (
    ActorError,
    Command,
    CommandTimeoutError,
    ConcurrencyError,
    DataManager,
    NotFoundError,
    Transaction,
    UnknownDataSourceError,
    ValidationError,
    process_data,
    transform,
    validate,
)
from eventstore import record_stream


class Address(msgspec.Struct):
    city: str
    zip: str = ""


class User(msgspec.Struct):
    name: str
    email: str
    age: int = 0
    address: Address | None = None
    tags: list[str] = []


@pytest.fixture(params=["memory", "lmdb"])
async def dm(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DataManager]:
    if request.param == "memory":
        manager = DataManager.in_memory()
    else:
        manager = DataManager.open(tmp_path / "data", durability="fast")
    async with manager:
        manager.add_data_source("users", schema=User)
        manager.add_data_source("notes")
        yield manager


async def test_create_read_update_delete_round_trip(dm: DataManager) -> None:
    rec = await dm.create("users", {"name": "Ada", "email": "ada@example.com"})

    assert rec.version == 1
    assert rec.data == {
        "name": "Ada",
        "email": "ada@example.com",
        "age": 0,
        "address": None,
        "tags": [],
    }
    assert rec.created_at == rec.updated_at
    assert await dm.read("users", rec.id) == rec

    updated = await dm.update("users", rec.id, {"age": 37}, expected_version=1)
    assert updated.version == 2
    assert updated.data["age"] == 37
    assert updated.created_at == rec.created_at

    await dm.delete("users", rec.id, expected_version=2)
    assert await dm.read("users", rec.id) is None


async def test_create_with_a_given_id_uses_it_and_refuses_a_second(
    dm: DataManager,
) -> None:
    rec = await dm.create("notes", {"text": "x"}, id="n1")

    assert rec.id == "n1"
    assert dm.store.stream_version(record_stream("notes", "n1")) == 1
    with pytest.raises(ConcurrencyError, match="notes/n1 is at version 1"):
        await dm.create("notes", {"text": "y"}, id="n1")


async def test_a_deleted_id_can_be_created_again_and_keeps_its_history(
    dm: DataManager,
) -> None:
    await dm.create("notes", {"text": "one"}, id="n")
    await dm.delete("notes", "n")

    again = await dm.create("notes", {"text": "two"}, id="n")

    assert again.version == 3
    assert [r.data["text"] for r in await dm.history("notes", "n")] == ["one", "two"]


async def test_update_merges_a_patch_and_none_removes_a_field(dm: DataManager) -> None:
    rec = await dm.create("notes", {"a": 1, "nested": {"x": 1, "y": 2}})

    rec = await dm.update("notes", rec.id, {"b": 2, "nested": {"y": None, "z": 3}})

    assert rec.data == {"a": 1, "b": 2, "nested": {"x": 1, "z": 3}}


async def test_update_with_replace_replaces_the_data(dm: DataManager) -> None:
    rec = await dm.create("notes", {"a": 1})

    rec = await dm.update("notes", rec.id, {"b": 2}, replace=True)

    assert rec.data == {"b": 2}
    assert (await dm.read("notes", rec.id)) == rec


async def test_a_stale_expected_version_writes_nothing(dm: DataManager) -> None:
    rec = await dm.create("users", {"name": "Ada", "email": "a@x"})
    await dm.update("users", rec.id, {"age": 1})
    head = dm.store.head_position()

    with pytest.raises(ConcurrencyError) as caught:
        await dm.update("users", rec.id, {"age": 2}, expected_version=1)

    assert caught.value.collection == "users"
    assert caught.value.record_id == rec.id
    assert caught.value.actual == 2
    assert dm.store.head_position() == head
    current = await dm.read("users", rec.id)
    assert current is not None
    assert current.data["age"] == 1


async def test_update_and_delete_of_a_missing_record_raise_not_found(
    dm: DataManager,
) -> None:
    with pytest.raises(NotFoundError, match="no record 'ghost' in collection 'users'"):
        await dm.update("users", "ghost", {"age": 1})
    with pytest.raises(NotFoundError) as caught:
        await dm.delete("users", "ghost")

    assert caught.value.record_id == "ghost"


async def test_validation_errors_name_the_collection_the_id_and_the_field(
    dm: DataManager,
) -> None:
    with pytest.raises(ValidationError) as caught:
        await dm.create("users", {"name": "Ada", "email": "a@x", "age": "old"}, id="u1")

    assert caught.value.collection == "users"
    assert caught.value.record_id == "u1"
    assert caught.value.field == "$.age"
    assert "users/u1" in str(caught.value)
    assert "Expected `int`, got `str`" in str(caught.value)
    assert await dm.read("users", "u1") is None


async def test_an_update_is_validated_against_the_merged_record(
    dm: DataManager,
) -> None:
    rec = await dm.create("users", {"name": "Ada", "email": "a@x"})

    with pytest.raises(ValidationError, match=r"missing required field `city`"):
        await dm.update("users", rec.id, {"address": {"zip": "1"}})
    with pytest.raises(ValidationError, match="patch must be a dict"):
        await dm.update("users", rec.id, ["no"])  # type: ignore[arg-type]


async def test_record_data_must_be_a_dict(dm: DataManager) -> None:
    with pytest.raises(ValidationError, match="must be a dict, not list"):
        await dm.create("notes", [1, 2])  # type: ignore[arg-type]


async def test_data_that_cannot_be_stored_fails_and_leaves_no_trace(
    dm: DataManager,
) -> None:
    with pytest.raises(ValidationError, match="cannot be stored"):
        await dm.create("notes", {"bad": object()}, id="odd")

    assert await dm.read("notes", "odd") is None
    rec = await dm.create("notes", {"fine": True}, id="odd")
    assert rec.version == 1


async def test_query_filters_orders_and_pages(dm: DataManager) -> None:
    people = [
        ("Ada", 36, "London", ["math"]),
        ("Grace", 45, "New York", ["navy", "cobol"]),
        ("Alan", 41, "London", ["math", "crypto"]),
        ("Kid", 9, "Paris", []),
    ]
    for name, age, city, tags in people:
        await dm.create(
            "users",
            {
                "name": name,
                "email": f"{name}@x",
                "age": age,
                "address": {"city": city},
                "tags": tags,
            },
        )

    adults = await dm.query("users", where={"age": {"gte": 18}}, order_by="name")
    londoners = await dm.query(
        "users", where={"address.city": "London", "tags": {"contains": "crypto"}}
    )
    page = await dm.query("users", order_by="-age", limit=2, offset=1)
    chosen = await dm.query("users", where={"name": {"in": ["Kid", "Ada"]}})

    assert [r.data["name"] for r in adults] == ["Ada", "Alan", "Grace"]
    assert [r.data["name"] for r in londoners] == ["Alan"]
    assert [r.data["name"] for r in page] == ["Alan", "Ada"]
    assert sorted(r.data["name"] for r in chosen) == ["Ada", "Kid"]


async def test_a_malformed_query_raises_a_query_error(dm: DataManager) -> None:
    from projections import QueryError  # noqa: PLC0415

    with pytest.raises(QueryError, match="unknown operator 'near'"):
        await dm.query("users", where={"age": {"near": 3}})


async def test_history_and_reads_as_of_a_version(dm: DataManager) -> None:
    rec = await dm.create("notes", {"n": 1})
    await dm.update("notes", rec.id, {"n": 2})
    await dm.update("notes", rec.id, {"n": 3})

    history = await dm.history("notes", rec.id)
    old = await dm.read("notes", rec.id, as_of_version=2)
    beyond = await dm.read("notes", rec.id, as_of_version=9)

    assert [(r.version, r.data["n"]) for r in history] == [(1, 1), (2, 2), (3, 3)]
    assert old is not None
    assert old.data == {"n": 2}
    assert beyond is None


async def test_a_duplicate_command_id_creates_one_record(dm: DataManager) -> None:
    first = await dm.create("notes", {"t": 1}, command_id="cmd-1")
    results = await asyncio.gather(
        *(dm.create("notes", {"t": 1}, command_id="cmd-1") for _ in range(5))
    )

    assert all(r == first for r in results)
    assert len(await dm.query("notes")) == 1


async def test_concurrent_duplicates_of_one_command_create_one_record(
    dm: DataManager,
) -> None:
    results = await asyncio.gather(
        *(dm.create("notes", {"t": 1}, command_id="cmd-2") for _ in range(20))
    )

    assert len({r.id for r in results}) == 1
    assert len(await dm.query("notes")) == 1


async def test_batches_are_one_atomic_append(dm: DataManager) -> None:
    head = dm.store.head_position()

    created = await dm.batch_create("notes", [{"i": i} for i in range(50)])
    read = await dm.batch_read("notes", [r.id for r in created] + ["missing"])
    updated = await dm.batch_update(
        "notes", [(r.id, {"j": r.data["i"] * 2}) for r in created[:10]]
    )

    assert [r.data["i"] for r in created] == list(range(50))
    assert read[:50] == created
    assert read[50] is None
    assert [r.data["j"] for r in updated] == [i * 2 for i in range(10)]
    events = list(dm.store.read_all(from_position=head + 1))
    assert len(events) == 60
    await dm.batch_delete("notes", [r.id for r in created[:5]])
    assert len(await dm.query("notes")) == 45


async def test_a_batch_with_one_bad_item_writes_nothing(dm: DataManager) -> None:
    head = dm.store.head_position()
    a = await dm.create("users", {"name": "A", "email": "a"})

    with pytest.raises(ValidationError):
        await dm.batch_create("users", [{"name": "B", "email": "b"}, {"name": 3}])
    with pytest.raises(ConcurrencyError):
        await dm.batch_update("users", [(a.id, {"age": 5}), (a.id, {"age": 6}, 1)])

    assert dm.store.head_position() == head + 1
    assert len(await dm.query("users")) == 1
    assert await dm.batch_create("users", []) == []


async def test_a_transaction_commits_over_several_collections_at_once(
    dm: DataManager,
) -> None:
    ada = await dm.create("users", {"name": "Ada", "email": "a@x"})
    head = dm.store.head_position()

    async with dm.transaction() as tx:
        note_id = tx.create("notes", {"about": ada.id})
        tx.update("users", ada.id, {"age": 36}, expected_version=1)
        tx.update("notes", note_id, {"seen": True})

    note = await dm.read("notes", note_id)
    user = await dm.read("users", ada.id)
    assert note is not None
    assert note.version == 2
    assert note.data == {"about": ada.id, "seen": True}
    assert user is not None
    assert user.data["age"] == 36
    positions = {e.position for e in dm.store.read_all(from_position=head + 1)}
    assert positions == {head + 1, head + 2, head + 3}


async def in_transaction(dm: DataManager, stage: Callable[[Transaction], None]) -> None:
    async with dm.transaction() as tx:
        stage(tx)


async def test_a_failing_transaction_commits_nothing_in_any_collection(
    dm: DataManager,
) -> None:
    ada = await dm.create("users", {"name": "Ada", "email": "a@x"})
    await dm.update("users", ada.id, {"age": 1})
    head = dm.store.head_position()

    def stale(tx: Transaction) -> None:
        tx.create("notes", {"n": 1}, id="n1")
        tx.update("users", ada.id, {"age": 2}, expected_version=1)

    def changed_mind(tx: Transaction) -> None:
        tx.create("notes", {"n": 2}, id="n2")
        raise RuntimeError("changed my mind")

    def missing(tx: Transaction) -> None:
        tx.create("notes", {"n": 3}, id="n3")
        tx.delete("users", "ghost")

    with pytest.raises(ConcurrencyError):
        await in_transaction(dm, stale)
    with pytest.raises(RuntimeError, match="changed my mind"):
        await in_transaction(dm, changed_mind)
    with pytest.raises(NotFoundError):
        await in_transaction(dm, missing)

    assert dm.store.head_position() == head
    assert await dm.batch_read("notes", ["n1", "n2", "n3"]) == [None, None, None]
    # The records a failed transaction locked are free again.
    assert (await dm.update("users", ada.id, {"age": 3})).version == 3


async def test_writes_to_a_record_wait_while_a_transaction_holds_it(
    dm: DataManager,
) -> None:
    rec = await dm.create("notes", {"n": 0})
    tx = dm.transaction()
    tx.update("notes", rec.id, {"n": 1})

    commit = asyncio.ensure_future(tx.commit())
    update = asyncio.ensure_future(dm.update("notes", rec.id, {"m": 2}))
    await asyncio.wait_for(asyncio.gather(commit, update), 5)

    final = await dm.read("notes", rec.id)
    assert final is not None
    assert final.version == 3
    assert final.data == {"n": 1, "m": 2}


async def test_a_finished_transaction_refuses_more_work(dm: DataManager) -> None:
    tx = dm.transaction()
    tx.create("notes", {"n": 1})
    await tx.commit()

    with pytest.raises(ActorError, match="already finished"):
        tx.create("notes", {"n": 2})
    with pytest.raises(ActorError, match="already finished"):
        await tx.commit()
    with pytest.raises(UnknownDataSourceError):
        dm.transaction().create("nowhere", {})


async def test_middleware_sees_every_command_and_may_reject_one(
    dm: DataManager,
) -> None:
    seen: list[tuple[str, str | None, str]] = []

    async def audit(
        command: Command, call_next: Callable[[Command], Awaitable[Any]]
    ) -> Any:
        seen.append((command.name, command.collection, "before"))
        result = await call_next(command)
        seen.append((command.name, command.collection, "after"))
        return result

    async def no_deletes(
        command: Command, call_next: Callable[[Command], Awaitable[Any]]
    ) -> Any:
        if command.name == "delete":
            raise PermissionError(f"{command.collection}: deletes are not allowed")
        return await call_next(command)

    dm.use(audit)
    dm.use(no_deletes)
    rec = await dm.create("notes", {"n": 1})
    await dm.read("notes", rec.id)
    async with dm.transaction() as tx:
        tx.update("notes", rec.id, {"n": 2})

    with pytest.raises(PermissionError, match="deletes are not allowed"):
        await dm.delete("notes", rec.id)
    assert seen == [
        ("create", "notes", "before"),
        ("create", "notes", "after"),
        ("read", "notes", "before"),
        ("read", "notes", "after"),
        ("transaction", None, "before"),
        ("transaction", None, "after"),
        ("delete", "notes", "before"),
    ]
    assert await dm.read("notes", rec.id) is not None


async def test_transformers_run_before_validation_on_every_write() -> None:
    def lower_email(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "email": str(data.get("email", "")).lower()}

    async with DataManager.in_memory() as dm:
        dm.add_data_source("users", schema=User, transformers=[lower_email])
        rec = await dm.create("users", {"name": "Ada", "email": "ADA@X"})
        rec = await dm.update("users", rec.id, {"email": "NEW@X"})
        history = await dm.history("users", rec.id)

    assert rec.data["email"] == "new@x"
    assert [r.data["email"] for r in history] == ["ada@x", "new@x"]


async def test_a_transformer_must_return_a_dict() -> None:
    async with DataManager.in_memory() as dm:
        dm.add_data_source("notes", transformers=[lambda _d: None])

        with pytest.raises(ValidationError, match="returned NoneType, not a dict"):
            await dm.create("notes", {"n": 1})


async def test_data_sources_are_added_listed_and_removed(dm: DataManager) -> None:
    source = dm.get_data_source("users")

    assert source.kind == "collection"
    assert source.schema is User
    assert dm.list_data_sources() == ["users", "notes"]
    await dm.remove_data_source("notes")
    assert dm.list_data_sources() == ["users"]
    with pytest.raises(UnknownDataSourceError, match="no data source 'notes'"):
        await dm.read("notes", "x")
    with pytest.raises(UnknownDataSourceError):
        dm.get_data_source("notes")


async def test_a_removed_collection_is_recovered_when_added_again(
    dm: DataManager,
) -> None:
    rec = await dm.create("notes", {"n": 1})
    await dm.remove_data_source("notes")

    dm.add_data_source("notes")

    assert await dm.read("notes", rec.id) == rec


async def test_bad_data_source_definitions_are_refused(dm: DataManager) -> None:
    with pytest.raises(ActorError, match="kind 'http' is not supported yet"):
        dm.add_data_source("products", "http")
    with pytest.raises(ActorError, match="exists"):
        dm.add_data_source("users")
    with pytest.raises(ActorError, match="without '/'"):
        dm.add_data_source("a/b")
    with pytest.raises(ActorError, match=r"msgspec\.Struct"):
        dm.add_data_source("things", schema=dict)  # type: ignore[arg-type]


async def test_a_command_that_gets_no_answer_times_out_naming_actor_and_command(
    dm: DataManager,
) -> None:
    rec = await dm.create("notes", {"n": 0})
    # Hold the record's lock by preparing without finishing.
    from actors._collection import Op, Prepare, Write  # noqa: PLC0415

    await dm.ask(
        "notes", lambda r: Prepare(r, "held", (Op("update", rec.id, {}),)), "p"
    )
    dm.command_timeout_s = 0.05

    with pytest.raises(CommandTimeoutError) as caught:
        await dm.update("notes", rec.id, {"n": 2})

    assert caught.value.actor == "notes"
    assert f"update notes/{rec.id}" in str(caught.value)
    with pytest.raises(
        CommandTimeoutError, match=r"'notes' did not answer w within 0\.01 s"
    ):
        await dm.ask(
            "notes",
            lambda r: Write(r, (Op("update", rec.id, {}),)),
            "w",
            timeout_s=0.01,
        )
    with pytest.raises(ActorError, match="unknown message"):
        await dm.ask("notes", _Silent, "silent")


class _Silent(msgspec.Struct, frozen=True):
    reply: Any

    def fail(self, error: BaseException) -> None:
        self.reply.fail(error)


async def test_closed_managers_refuse_commands(tmp_path: Path) -> None:
    dm = DataManager.open(tmp_path / "d")
    with pytest.raises(ActorError, match="not started"):
        _ = dm.store
    await dm.start()
    dm.add_data_source("notes")
    await dm.close()
    await dm.close()

    with pytest.raises(ActorError, match="is stopped"):
        await dm.create("notes", {"n": 1})


def test_a_manager_needs_one_place_to_keep_its_data() -> None:
    with pytest.raises(ActorError, match="exactly one of path= and store="):
        DataManager()


async def test_validate_transform_and_process_data() -> None:
    async def double(value: int) -> int:
        await asyncio.sleep(0)
        return value * 2

    assert validate({"name": "A", "email": "e"}, User)["age"] == 0
    assert validate({"x": 1}, None) == {"x": 1}
    assert transform({"a": 1}, lambda d: {**d, "b": 2}) == {"a": 1, "b": 2}
    assert await process_data(3, [lambda v: v + 1, double]) == 8
    assert DataManager.validate({"x": 1}, None) == {"x": 1}
    assert DataManager.transform({"a": 1}, dict) == {"a": 1}
    assert await DataManager.process_data(1, [double]) == 2
    with pytest.raises(ValidationError, match="does not fit User"):
        validate({"name": 1}, User)
