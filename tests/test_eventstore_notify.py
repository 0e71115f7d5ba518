"""Wake-ups of readers waiting for commits."""

import asyncio
import threading

from eventstore._notify import CommitNotifier

TIMEOUT_S = 10


def test_a_blocking_wait_returns_on_commit_or_after_its_timeout() -> None:
    notifier = CommitNotifier()
    generation = notifier.generation

    assert not notifier.wait(generation, 0.01)
    threading.Timer(0.01, notifier.committed).start()
    assert notifier.wait(generation, TIMEOUT_S)
    assert notifier.generation == generation + 1


def test_an_async_wait_returns_at_once_when_a_commit_came_already() -> None:
    notifier = CommitNotifier()
    generation = notifier.generation
    notifier.committed()

    assert asyncio.run(notifier.wait_async(generation, TIMEOUT_S))


def test_an_async_wait_times_out_and_forgets_its_waiter() -> None:
    notifier = CommitNotifier()

    async def main() -> bool:
        return await notifier.wait_async(notifier.generation, 0.01)

    assert not asyncio.run(main())
    assert notifier._async_waiters == []


def test_an_async_wait_wakes_on_a_commit_from_another_thread() -> None:
    notifier = CommitNotifier()

    async def main() -> bool:
        generation = notifier.generation
        threading.Timer(0.01, notifier.committed).start()
        return await notifier.wait_async(generation, TIMEOUT_S)

    assert asyncio.run(asyncio.wait_for(main(), TIMEOUT_S))


def test_a_commit_after_a_waiting_loop_closed_does_not_fail() -> None:
    notifier = CommitNotifier()
    loop = asyncio.new_event_loop()
    task = loop.create_task(notifier.wait_async(notifier.generation, TIMEOUT_S))
    loop.call_soon(loop.stop)
    loop.run_forever()
    task.cancel()
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    loop.close()

    notifier.committed()

    assert notifier.generation == 1
