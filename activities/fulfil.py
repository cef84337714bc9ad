"""Combined steps: several PostgreSQL-only steps of the happy path in one local activity and
one transaction.

Each part is the very step the workflow would otherwise call on its own (same code, same
idempotency keys, same timeline entries); together they cost one activity, one workflow
activation and one commit instead of up to four. The workflow still decides everything
that needs a decision: a combined step only goes on while the path is the plain one (no
approval needed, stock all there or partial shipment allowed) and reports where it stopped.
"""

from __future__ import annotations

from temporalio import activity

from activities.assessment import AssessmentActivities
from activities.base import DbActivities
from activities.billing import BillingActivities
from activities.inventory import InventoryActivities
from activities.orders import OrderActivities
from activities.shipping import ShippingActivities
from activities.warehouse import WarehouseActivities
from db.session import SessionFactory
from domain.fulfilment import FirstPass, FirstPassRequest, Prepared, PrepareRequest
from domain.orders import OrderRef
from domain.shipping import DeliveryClose, ShipmentRecord
from services.config import Settings


class FulfilActivities(DbActivities):
    def __init__(
        self, sessions: SessionFactory, settings: Settings, shipping: ShippingActivities
    ) -> None:
        super().__init__(sessions, settings)
        self.intake = AssessmentActivities(sessions, settings)
        self.inventory = InventoryActivities(sessions, settings)
        self.warehouse = WarehouseActivities(sessions, settings)
        self.billing = BillingActivities(sessions, settings)
        self.orders = OrderActivities(sessions, settings)
        self.shipping = shipping

    @activity.defn(name="fulfil.first_pass")
    async def first_pass(self, req: FirstPassRequest) -> FirstPass:
        """Assess (credit, routing); an order that needs nobody's approval goes straight on
        to reserve, pick and pack its first shipment."""
        async with self.tx():
            assessment = await self.intake.assess_order(req.assess)
            if not assessment.ok or assessment.levels:
                return FirstPass(assessment=assessment)
            prepared = await self._prepare(
                PrepareRequest(
                    ref=OrderRef(order_id=req.assess.order_id),
                    ship_partial=req.ship_partial,
                    pick=req.pick,
                )
            )
            return FirstPass(assessment=assessment, prepared=prepared)

    @activity.defn(name="fulfil.prepare")
    async def prepare(self, req: PrepareRequest) -> Prepared:
        """Reserve; when the shipment can go, pick and pack it."""
        async with self.tx():
            return await self._prepare(req)

    async def _prepare(self, req: PrepareRequest) -> Prepared:
        reserved = await self.inventory.reserve(req.ref)
        can_go = reserved.fully_reserved or (req.ship_partial and reserved.ready_units > 0)
        if not can_go or not req.pick:  # manual mode: people pick and pack
            return Prepared(reserved=reserved)
        await self.warehouse.create_pick_list(req.ref)
        return Prepared(reserved=reserved, packed=await self.warehouse.pack(req.ref))

    @activity.defn(name="fulfil.ship_and_invoice")
    async def ship_and_invoice(self, rec: ShipmentRecord) -> str:
        """The goods leave (stock written out) and their invoice is posted; answers the
        invoice number."""
        async with self.tx():
            await self.shipping.record_shipment(rec)
            return await self.billing.invoice(
                OrderRef(order_id=rec.order_id, shipment_no=rec.shipment_no)
            )

    @activity.defn(name="fulfil.deliver_and_complete")
    async def deliver_and_complete(self, close: DeliveryClose) -> None:
        """The order's last shipment is delivered, and the order is complete."""
        async with self.tx():
            await self.shipping.record_delivery(close.event)
            await self.orders.set_status(close.completion)
