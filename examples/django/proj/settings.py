"""Settings of the example project. The database is named by DATABASE_URL
(postgresql://user@host:port/name, mysql://user@host:port/name; default: an SQLite file),
the broker by CELERY_BROKER_URL (default: an SQLite file beside it)."""

import os
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "celeriac.contrib.django",  # results and periodic tasks in the database, in the admin
    "orders",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "proj.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def _database(url: str) -> dict:
    parts = urlsplit(url)
    engine = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql"}
    return {
        "ENGINE": f"django.db.backends.{engine[parts.scheme]}",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": _database(os.environ["DATABASE_URL"])}
    # Persistent connections: the worker's Django fixup closes them once unusable or older
    # than this, and with health checks a connection the server dropped is replaced.
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("DJANGO_CONN_MAX_AGE", "0"))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DATABASES["default"]["ENGINE"].endswith("mysql"):
        try:
            import MySQLdb  # noqa: F401  (mysqlclient, Django's usual MySQL driver)
        except ImportError:  # PyMySQL (celeriac[sql]) stands in for it
            import pymysql

            pymysql.install_as_MySQLdb()
else:
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# Celery settings, read with namespace="CELERY" (proj/celery.py).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", f"sqlite:///{BASE_DIR / 'broker.sqlite'}")
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_TRACK_STARTED = True
CELERY_BEAT_SCHEDULER = "django"  # periodic tasks are edited in the admin (or: beat -S django)
