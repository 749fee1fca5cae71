"""The training job queue: each tenant's jobs in order, tenants in turn."""

from __future__ import annotations

from service.jobs.scheduler import FairQueue


def drain(queue: FairQueue[str], workers: int = 1) -> list[str]:
    """Runs everything queued on `workers` workers, one job ending per step, oldest first."""
    order: list[str] = []
    running: list[tuple[str, str]] = []
    while len(queue) or running:
        while len(running) < workers and (popped := queue.pop()) is not None:
            running.append(popped)
            order.append(popped[1])
        tenant, _ = running.pop(0)
        queue.release(tenant)
    return order


def test_each_tenant_in_order_and_tenants_in_turn() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(1, 5):
        queue.push("a", f"a{i}")
    queue.push("b", "b1")
    queue.push("c", "c1")
    queue.push("b", "b2")
    assert drain(queue) == ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]


def test_a_late_tenant_runs_next_not_behind_the_queue_of_another() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(1, 5):
        queue.push("a", f"a{i}")
    assert queue.pop() == ("a", "a1")  # a1 runs; a2..a4 wait
    queue.push("b", "b1")  # b arrives while a's job runs
    queue.release("a")
    assert queue.pop() == ("b", "b1")  # b's first before a's second
    queue.release("b")
    assert [queue.pop(), queue.pop(), queue.pop(), queue.pop()] == [
        ("a", "a2"),
        ("a", "a3"),
        ("a", "a4"),
        None,
    ]


def test_a_tenant_that_just_ran_waits_behind_one_that_has_not() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "a1")
    queue.push("b", "b1")
    assert queue.pop() == ("a", "a1")
    queue.push("a", "a2")  # a resubmits while its first job still runs
    queue.release("a")
    assert queue.pop() == ("b", "b1")


def test_two_workers_never_run_a_fifth_job_before_another_tenants_first() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(1, 6):
        queue.push("a", f"a{i}")
    for i in range(1, 3):
        queue.push("b", f"b{i}")
    order = drain(queue, workers=2)
    assert order.index("b1") < order.index("a2") and order.index("b2") < order.index("a3")


def test_removing_a_queued_job_and_forgetting_idle_tenants() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "a1")
    queue.push("a", "a2")
    assert queue.remove("a", "a2") and not queue.remove("a", "a2")
    assert not queue.remove("b", "a1")  # another tenant cannot take a's job out
    assert queue.pop() == ("a", "a1")
    queue.release("a")
    assert queue.pop() is None and len(queue) == 0
    # a is idle and forgotten: when it comes back it is no later in line than a new tenant.
    queue.push("b", "b1")
    queue.push("a", "a3")
    assert queue.pop() == ("b", "b1")
    assert queue._last_turn.keys() == {"b"}  # memory follows active tenants only
