"""The orders app's tasks, found by ``app.autodiscover_tasks()``."""

import os
import time
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from celeriac import shared_task
from orders.models import Order


@shared_task
def process_order(order_id):
    """Sent with ``delay_on_commit``: the order's row is committed before this reads it."""
    order = Order.objects.get(pk=order_id)
    order.status = "processed"
    order.processed_by = f"pid {os.getpid()}"
    order.save()
    return order.status


@shared_task(bind=True)
def sales_report(self, pause=0.0):
    """Counts the orders, reporting its progress as a custom PROGRESS state."""
    orders = list(Order.objects.order_by("pk").values_list("quantity", flat=True))
    total = 0
    for done, quantity in enumerate(orders, start=1):
        total += quantity
        self.update_state(state="PROGRESS", meta={"done": done, "of": len(orders)})
        time.sleep(pause)
    return {"orders": len(orders), "items": total}


@shared_task
def cleanup_orders(days=30):
    """The periodic cleanup set in the admin: deletes processed orders older than ``days``."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = Order.objects.filter(status="processed", created__lt=cutoff).delete()
    return deleted


@shared_task
def connection_id():
    """The database session this task ran in (to see connections handled per task)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_backend_pid()")
        else:
            cursor.execute("SELECT CONNECTION_ID()")
        return [os.getpid(), cursor.fetchone()[0]]


@shared_task
def total_items(reports):
    """A chord's body: the items counted by several reports (``chord(...)(total_items.s())``)."""
    return sum(report["items"] for report in reports)
