"""Every retry policy and timeout the workflows give their steps, named once.

Changing one changes the commands a workflow sends: histories in flight still replay (the
options are no part of the determinism check), but think of the orders already waiting.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# ---- the order workflow -------------------------------------------------------------

# PostgreSQL steps: quick retries, then a pause long enough to ride out a restart.
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=20,
)
DB_TIMEOUT = timedelta(seconds=15)
# Compensations never give up: they keep retrying until they take effect.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
)
CARRIER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=10,
    non_retryable_error_types=["CarrierRejected"],
)
CARRIER_TIMEOUT = timedelta(minutes=2)
CARRIER_HEARTBEAT = timedelta(seconds=10)
# How long a booking the carrier refused for good waits for ops to retry or cancel.
CARRIER_HOLD = timedelta(days=30)
# Webhook deliveries: about 15 minutes of retries; the alert itself is stored regardless.
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=8,
)
NOTIFY_TIMEOUT = timedelta(seconds=30)
# Asking the carrier for tracking backs off up to this interval.
MAX_DELIVERY_POLL = timedelta(hours=1)
# Orders from before patch "cancel-waits-for-effect": the cancel Update gave up after this.
OLD_CANCEL_UPDATE_WAIT = timedelta(seconds=30)

# ---- the alert workflow ---------------------------------------------------------------

ALERT_STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30)
)
ALERT_STORE_TIMEOUT = timedelta(seconds=15)
# A receiver that is down is retried for a day, backing off to every 10 minutes.
ALERT_DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)
ALERT_DELIVERY_TIMEOUT = timedelta(seconds=30)
ALERT_DELIVERY_WINDOW = timedelta(days=1)

# ---- the import workflow --------------------------------------------------------------

IMPORT_BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
IMPORT_BATCH_TIMEOUT = timedelta(minutes=10)
IMPORT_BATCH_HEARTBEAT = timedelta(minutes=1)
IMPORT_FINISH_TIMEOUT = timedelta(seconds=15)
