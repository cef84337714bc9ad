"""Races inside one order, made to happen on purpose: the carrier's booking result and a
cancel delivered to the workflow in the same workflow task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, UpdateWorkflowExecutionLifecycleStage
from temporalio.api.update.v1 import UpdateRef, WaitPolicy
from temporalio.api.workflowservice.v1 import PollWorkflowExecutionUpdateRequest
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import Replayer, Worker
from temporalio.worker._workflow_instance import _WorkflowLogicFlag

from activities.shipping import SimulatedCarrier
from db.models import Invoice, Order, Shipment, Stock
from domain.orders import CancelRequest, OrderState
from domain.shipping import Booking, ShipmentRequest
from tests.utils import Stack
from workers.main import activities_for
from workflows.alert import AlertWorkflow
from workflows.order import OrderWorkflow

ADMITTED = UpdateWorkflowExecutionLifecycleStage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ADMITTED


class GatedCarrier(SimulatedCarrier):
    """Books only when the test opens the gate; remembers the bookings it was asked to cancel."""

    def __init__(self) -> None:
        super().__init__(transit_seconds=0)
        self.calling = asyncio.Event()
        self.gate = asyncio.Event()
        self.cancelled: list[tuple[str, int]] = []

    async def book(self, req: ShipmentRequest, attempt: int) -> Booking:
        self.calling.set()
        await self.gate.wait()
        return await super().book(req, attempt)

    async def cancel(self, order_id: str, shipment_no: int) -> None:
        self.cancelled.append((order_id, shipment_no))


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def workers(stack: Stack, carrier: SimulatedCarrier, *, remote: bool) -> AsyncIterator[None]:
    """The order worker split in two: `remote` runs the carrier activities only; otherwise
    the workflows with their local activities only. Stopping the second alone holds the
    workflow's next task back while a carrier call goes on.

    The workflow half applies all of an activation's jobs before running any workflow code:
    the SDK's announced next default (its `_WorkflowLogicFlag` 2; histories recorded with it
    replay with it). The current default runs Update handlers, and checks conditions, before
    it resolves activities, which happens to hide this race; the new one exposes it."""
    async with httpx.AsyncClient(timeout=10) as http:
        acts = activities_for(stack.sessions, stack.settings, carrier, http)
        if remote:
            worker = Worker(stack.client, task_queue=stack.settings.task_queue, activities=acts)
        else:
            worker = Worker(
                stack.client,
                task_queue=stack.settings.task_queue,
                workflows=[OrderWorkflow, AlertWorkflow],
                activities=acts,
                no_remote_activities=True,
            )
            worker._set_default_workflow_logic_flag(
                _WorkflowLogicFlag.PROCESS_WORKFLOW_ACTIVATION_JOBS_AS_SINGLE_BATCH, enabled=True
            )
        async with worker:
            yield


async def _events(handle: WorkflowHandle) -> list:
    return [e async for e in handle.fetch_history_events()]


async def _admitted(client: Client, handle: WorkflowHandle, update_id: str) -> bool:
    """The server holds the Update (it reaches the workflow with its next task)."""
    try:
        res = await client.workflow_service.poll_workflow_execution_update(
            PollWorkflowExecutionUpdateRequest(
                namespace=client.namespace,
                update_ref=UpdateRef(
                    workflow_execution=WorkflowExecution(workflow_id=handle.id),
                    update_id=update_id,
                ),
                wait_policy=WaitPolicy(lifecycle_stage=ADMITTED),
            ),
            timeout=timedelta(seconds=2),
        )
    except RPCError:
        return False
    return res.stage >= ADMITTED


async def test_a_cancel_landing_with_the_booking_result_is_honoured_not_shipped(
    api_stack: Stack,
):
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product(stock=10)
    carrier = GatedCarrier()
    async with workers(stack, carrier, remote=True):
        async with workers(stack, carrier, remote=False):
            order_id = (await stack.order(customer, [(sku, 4)])).json()["id"]
            await asyncio.wait_for(carrier.calling.wait(), timeout=30)
        # The workflow waits for the booking with no worker to run its next task: the cancel
        # and the booking result both queue up for that one task.
        handle = stack.client.get_workflow_handle(f"order-{order_id}")
        cancel = asyncio.create_task(
            handle.execute_update(
                "cancel",
                CancelRequest(reason="race", by="test"),
                id="race-cancel",
                result_type=OrderState,
            )
        )
        await until(lambda: _admitted(stack.client, handle, "race-cancel"), "the cancel admitted")
        carrier.gate.set()

        async def booked() -> bool:
            return any(
                e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                for e in await _events(handle)
            )

        await until(booked, "the booking result in the history")
        async with workers(stack, carrier, remote=False):
            state = await asyncio.wait_for(cancel, timeout=60)
            await stack.wait_status(order_id, "cancelled", within=30)

    # The race happened: one workflow task took both the booking result and the cancel.
    events = await _events(handle)
    kinds = [e.event_type for e in events]
    booked_at = kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    accepted_at = kinds.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    between = kinds[booked_at:accepted_at]
    assert between.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1, between

    assert state.status == "cancelled"
    # Nothing shipped or billed; the booking made at the carrier was cancelled; stock is back.
    assert carrier.cancelled == [(order_id, 1)]
    assert await stack.count(Shipment, Shipment.order_id == order_id) == 0
    assert await stack.count(Invoice, Invoice.order_id == order_id) == 0
    async with stack.sessions() as s:
        stock = await s.get(Stock, sku)
        assert stock is not None and (stock.on_hand, stock.reserved, stock.shipped) == (10, 0, 0)
        status = await s.scalar(select(Order.status).where(Order.id == order_id))
    assert status == "cancelled"
    # The patched path replays (with its markers) like any history in flight.
    await _replay(await handle.fetch_history())


async def _replay(history: WorkflowHistory) -> None:
    replayer = Replayer(
        workflows=[OrderWorkflow, AlertWorkflow], data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_an_order_that_shipped_after_the_race_before_the_fix_still_replays():
    """Recorded from the code before patch "checkpoint-after-booking" (the same race as above:
    that order shipped and completed although its cancel had been accepted)."""
    path = Path(__file__).parent.parent / "histories" / "booking_cancel_race.json"
    history = WorkflowHistory.from_json("order-booking-cancel-race", path.read_text())
    kinds = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED in kinds
    assert kinds[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    await _replay(history)
