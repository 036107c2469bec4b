from django.contrib import admin
from django.urls import path
from orders import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("orders/", views.place_order),
    path("reports/", views.start_report),
    path("reports/<str:task_id>/", views.report_status),
]
