"""Django integration: the fixup, ``DjangoTask``, and a Django app for results and schedules.

* ``celeriac.contrib.django.fixup``: what Celery's Django fixup does, installed automatically
  when ``DJANGO_SETTINGS_MODULE`` is set (or the app is configured from
  ``'django.conf:settings'``): ``django.setup()`` before the worker or beat imports task
  modules, database connections closed when old or unusable around each task and dropped
  in each forked pool child, and ``DjangoTask`` as the default task class.
* ``celeriac.contrib.django.task.DjangoTask``: ``delay_on_commit()`` /
  ``apply_async_on_commit()``.
* ``celeriac.contrib.django`` in ``INSTALLED_APPS`` (then ``manage.py migrate``): task and
  group results in the Django database (``result_backend='django-db'``, or
  ``'django-cache'``) and periodic tasks edited in the admin
  (``beat_scheduler='celeriac.contrib.django.schedulers:DatabaseScheduler'``), in the tables
  of django-celery-results and django-celery-beat.

Importing this package imports nothing of Django: each module does when it is used.
"""

default_app_config = "celeriac.contrib.django.apps.CeleriacConfig"  # Django < 3.2 only
