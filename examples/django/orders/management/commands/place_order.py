from django.core.management.base import BaseCommand
from django.db import transaction

from orders.models import Order
from orders.tasks import process_order


class Command(BaseCommand):
    help = "Place an order; it is processed by a worker once the transaction commits."

    def add_arguments(self, parser):
        parser.add_argument("item")
        parser.add_argument("--quantity", type=int, default=1)
        parser.add_argument("--rollback", action="store_true", help="Roll the order back.")

    def handle(self, *args, item, quantity, rollback, **options):
        try:
            with transaction.atomic():
                order = Order.objects.create(item=item, quantity=quantity)
                process_order.delay_on_commit(order.pk)
                if rollback:
                    raise RuntimeError("rolled back")
        except RuntimeError:
            self.stdout.write("rolled back")
            return
        self.stdout.write(str(order.pk))
