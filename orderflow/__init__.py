"""Orderflow: sales-order fulfillment as durable Temporal workflows on PostgreSQL."""

__version__ = "0.1.0"
