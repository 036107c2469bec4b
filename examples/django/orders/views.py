import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from celeriac.result import AsyncResult
from orders.models import Order
from orders.tasks import process_order, sales_report


@csrf_exempt
def place_order(request: HttpRequest) -> JsonResponse:
    """POST {"item": ..., "quantity": ...}: the order is saved, and processed once committed."""
    data = json.loads(request.body or b"{}")
    with transaction.atomic():
        order = Order.objects.create(item=data["item"], quantity=data.get("quantity", 1))
        process_order.delay_on_commit(order.pk)
    return JsonResponse({"order": order.pk}, status=201)


@csrf_exempt
def start_report(request: HttpRequest) -> JsonResponse:
    result = sales_report.delay(float(request.GET.get("pause", 0)))
    return JsonResponse({"task_id": result.id}, status=202)


def report_status(request: HttpRequest, task_id: str) -> JsonResponse:
    result = AsyncResult(task_id)
    return JsonResponse(
        {"state": result.state, "info": result.info if not result.failed() else str(result.info)}
    )
