"""Settings: Celery's names and defaults, old names, config objects, warnings and checks."""

from __future__ import annotations

import json
import os.path
import pickle
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from celeriac.app import settings as settings_module
from celeriac.app._setting_names import CELERIAC_SETTINGS
from celeriac.app.settings import (
    DEFAULTS,
    OLD_TO_NEW,
    Settings,
    as_seconds,
    resolve_config_object,
    settings_from_object,
    validate,
)
from celeriac.exceptions import ImproperlyConfigured, UnknownSettingWarning

celery_defaults = pytest.importorskip("celery.app.defaults")


def test_public_surface() -> None:
    assert sorted(settings_module.__all__) == [
        "DEFAULTS",
        "OLD_TO_NEW",
        "SERIALIZERS",
        "Settings",
        "as_seconds",
        "resolve_config_object",
        "settings_from_object",
        "validate",
    ]


# -- the tables ---------------------------------------------------------------------------


#: Where Celeriac's default differs from Celery's, on purpose (and documented).
OUR_DEFAULTS = {"result_backend_always_retry": True}  # docs/guarantees.md


def test_every_celery_setting_is_present_with_celerys_default() -> None:
    assert set(DEFAULTS) == set(celery_defaults.DEFAULTS) | set(CELERIAC_SETTINGS)
    for name, value in celery_defaults.DEFAULTS.items():
        assert DEFAULTS[name] == OUR_DEFAULTS.get(name, value), name
        assert type(DEFAULTS[name]) is type(value), name


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("broker_url", None),
        ("result_backend", None),
        ("result_expires", timedelta(days=1)),
        ("accept_content", ("json",)),
        ("enable_utc", True),
        ("timezone", None),
        ("task_serializer", "json"),
        ("task_default_queue", "celery"),
        ("task_acks_late", False),
        ("task_acks_on_failure_or_timeout", True),
        ("task_protocol", 2),
        ("worker_prefetch_multiplier", 4),
        ("worker_concurrency", None),
        ("worker_pool", "prefork"),
        ("broker_connection_timeout", 4),
        ("broker_pool_limit", 10),
        ("beat_schedule_filename", "celerybeat-schedule"),
        ("event_queue_exclusive", True),
        ("control_queue_ttl", 300.0),
        ("redis_socket_timeout", 120.0),
        ("result_backend_max_retries", float("inf")),
        ("security_digest", "sha256"),
        ("dead_letter_max_entries", 10_000),
        ("dead_letter_max_age", timedelta(days=7)),
    ],
)
def test_spot_checked_defaults(name: str, value: Any) -> None:
    assert DEFAULTS[name] == value


def test_every_old_name_celery_accepts_maps_to_the_same_new_name() -> None:
    for old, new in celery_defaults._TO_NEW_KEY.items():
        assert OLD_TO_NEW.get(old) == new, old
    # One Celery 3.x spelling is accepted on top of Celery 5.7's table, and the uppercase
    # names of Celeriac's own settings.
    assert set(OLD_TO_NEW) - set(celery_defaults._TO_NEW_KEY) == {
        "CELERY_ENABLE_UTC",
        *(name.upper() for name in CELERIAC_SETTINGS),
    }


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("CELERY_RESULT_BACKEND", "result_backend"),
        ("CELERY_TASK_RESULT_EXPIRES", "result_expires"),
        ("CELERYD_CONCURRENCY", "worker_concurrency"),
        ("CELERYD_PREFETCH_MULTIPLIER", "worker_prefetch_multiplier"),
        ("CELERY_DEFAULT_QUEUE", "task_default_queue"),
        ("CELERYBEAT_SCHEDULE", "beat_schedule"),
        ("BROKER_URL", "broker_url"),
        ("CELERY_TASK_SERIALIZER", "task_serializer"),
        ("CELERY_ACCEPT_CONTENT", "accept_content"),
        ("CELERY_ALWAYS_EAGER", "task_always_eager"),
        ("CELERY_EAGER_PROPAGATES_EXCEPTIONS", "task_eager_propagates"),
        ("CELERY_QUEUES", "task_queues"),
        ("CELERY_ROUTES", "task_routes"),
        ("CELERYD_TASK_TIME_LIMIT", "task_time_limit"),
        ("CELERY_SEND_EVENTS", "worker_send_task_events"),
        ("CELERY_RESULT_DBURI", "database_url"),
        ("CELERY_MAX_CACHED_RESULTS", "result_cache_max"),
        ("CELERY_EVENT_QUEUE_TTL", "event_queue_ttl"),
        ("CELERY_REDIS_MAX_CONNECTIONS", "redis_max_connections"),
        ("CELERY_SECURITY_KEY", "security_key"),
    ],
)
def test_old_names(old: str, new: str) -> None:
    assert OLD_TO_NEW[old] == new


# -- the Settings mapping -----------------------------------------------------------------


def test_item_and_attribute_access_by_new_and_old_names() -> None:
    conf = Settings()
    assert conf["broker_url"] is None
    conf.update(broker_url="redis://localhost/0")
    conf.update(CELERY_RESULT_BACKEND="redis://localhost/1")
    assert conf["broker_url"] == conf.broker_url == conf.BROKER_URL == "redis://localhost/0"
    assert conf["CELERY_RESULT_BACKEND"] == conf.result_backend == "redis://localhost/1"
    conf.CELERYD_CONCURRENCY = 3
    assert conf["worker_concurrency"] == 3
    assert "CELERYD_CONCURRENCY" in conf and "worker_concurrency" in conf
    assert conf.changes == {
        "broker_url": "redis://localhost/0",
        "result_backend": "redis://localhost/1",
        "worker_concurrency": 3,
    }


def test_update_with_old_names_stores_new_names() -> None:
    conf = Settings({"CELERY_ALWAYS_EAGER": True, "CELERYD_PREFETCH_MULTIPLIER": 1})
    assert conf.changes == {"task_always_eager": True, "worker_prefetch_multiplier": 1}
    conf.update([("BROKER_POOL_LIMIT", 2)], CELERY_ROUTES={"a": "b"})
    assert conf.task_routes == {"a": "b"} and conf.broker_pool_limit == 2


def test_missing_names_raise_key_and_attribute_errors_with_suggestions() -> None:
    conf = Settings()
    with pytest.raises(KeyError):
        conf["no_such_setting"]
    assert conf.get("no_such_setting", 7) == 7
    with pytest.raises(AttributeError, match=r"'task_acks_lat'.*did you mean 'task_acks_late'"):
        _ = conf.task_acks_lat


def test_delete_pop_and_clear_revert_to_defaults() -> None:
    conf = Settings({"task_acks_late": True, "worker_pool": "solo", "my_option": 1})
    del conf["CELERY_ACKS_LATE"]
    assert conf.task_acks_late is False
    with pytest.raises(KeyError):
        del conf["task_acks_late"]
    assert conf.pop("worker_pool") == "solo"
    assert conf.worker_pool == "prefork"
    assert conf.pop("worker_pool", "unset") == "unset"
    conf.clear()
    assert conf.changes == {}
    assert "my_option" not in conf
    assert conf.task_default_queue == "celery"


def test_setdefault_only_sets_names_without_a_value() -> None:
    conf = Settings()
    assert conf.setdefault("task_default_queue", "other") == "celery"
    assert conf.changes == {}
    assert conf.setdefault("my_option", 5) == 5
    assert conf.setdefault("my_option", 6) == 5
    assert conf.changes == {"my_option": 5}


def test_iteration_covers_defaults_and_extra_names() -> None:
    conf = Settings({"my_option": 1, "task_acks_late": True})
    names = list(conf)
    assert set(names) == set(DEFAULTS) | {"my_option"}
    assert len(conf) == len(names) == len(DEFAULTS) + 1


def test_mutable_defaults_are_private_to_each_settings_and_copies_are_independent() -> None:
    first = Settings()
    first.broker_transport_options["visibility_timeout"] = 10
    assert DEFAULTS["broker_transport_options"] == {}
    assert Settings().broker_transport_options == {}
    clone = first.copy()
    clone.task_acks_late = True
    assert first.task_acks_late is False
    assert clone.broker_transport_options == {"visibility_timeout": 10}


def test_pickle_round_trip_keeps_changes() -> None:
    conf = Settings({"task_acks_late": True})
    restored = pickle.loads(pickle.dumps(conf))
    assert restored.changes == {"task_acks_late": True}
    assert restored.task_default_queue == "celery"


def test_humanize_and_table() -> None:
    conf = Settings({"worker_pool": "solo", "task_acks_late": True})
    assert conf.humanize() == "task_acks_late: True\nworker_pool: 'solo'"
    assert conf.table() == {"task_acks_late": True, "worker_pool": "solo"}
    full = conf.table(with_defaults=True)
    assert full["task_default_queue"] == "celery" and full["worker_pool"] == "solo"
    lines = conf.humanize(with_defaults=True).splitlines()
    assert len(lines) == len(DEFAULTS)
    assert lines == sorted(lines)
    assert "result_expires: datetime.timedelta(days=1)" in lines


def test_humanize_masks_passwords_and_url_credentials_unless_uncensored() -> None:
    conf = Settings({"broker_url": "redis://user:s3cret@host:6379/0", "redis_password": "hunter2"})
    text = conf.humanize()
    assert "s3cret" not in text and "hunter2" not in text
    assert "broker_url: 'redis://user:**@host:6379/0'" in text
    assert conf.table(censored=False)["redis_password"] == "hunter2"


def test_find_option() -> None:
    conf = Settings({"worker_prefetch_multiplier": 1})
    assert conf.find_option("prefetch_multiplier") == ("worker_prefetch_multiplier", 1)
    assert conf.find_option("CELERY_ALWAYS_EAGER") == ("task_always_eager", False)
    assert conf.find_option("disable_rate_limits") == ("worker_disable_rate_limits", False)
    assert conf.find_option("BROKER_URL") == ("broker_url", None)
    with pytest.raises(KeyError, match=r"did you mean 'task_serializer'"):
        conf.find_option("task_serializr")


# -- unknown names ------------------------------------------------------------------------


def test_unknown_celery_looking_name_warns_at_the_users_line_and_is_kept() -> None:
    conf = Settings()
    with pytest.warns(UnknownSettingWarning, match=r"'task_acks_lat'.*'task_acks_late'") as rec:
        conf.update(task_acks_lat=True)
    assert rec[0].filename == __file__
    assert conf["task_acks_lat"] is True
    with pytest.warns(UnknownSettingWarning, match=r"'worker_prefetch_multiplyer'") as rec:
        conf["worker_prefetch_multiplyer"] = 2
    assert rec[0].filename == __file__
    with pytest.warns(UnknownSettingWarning, match=r"'CELERYD_CONCURRENCYY'") as rec:
        conf.CELERYD_CONCURRENCYY = 2
    assert rec[0].filename == __file__
    with pytest.warns(UnknownSettingWarning, match=r"broker_urll") as rec:
        Settings({"broker_urll": "x"})
    assert rec[0].filename == __file__


def test_namespaced_name_without_namespace_suggests_the_new_name() -> None:
    with pytest.warns(UnknownSettingWarning, match=r"did you mean 'broker_url'.*namespace"):
        Settings().update(CELERY_BROKER_URL="memory://")


def test_unrelated_names_are_kept_silently() -> None:
    conf = Settings()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conf.update(DEBUG=True, my_option=1, INSTALLED_APPS=["a"])
        conf.cache_timeout = 3
    assert conf.changes == {
        "DEBUG": True,
        "my_option": 1,
        "INSTALLED_APPS": ["a"],
        "cache_timeout": 3,
    }


def test_merge_points_warnings_at_the_loaders_caller() -> None:
    def load(**kwargs: Any) -> Settings:
        conf = Settings()
        conf.merge(kwargs, stacklevel=2)
        return conf

    with pytest.warns(UnknownSettingWarning) as rec:
        calling_line = sys._getframe().f_lineno + 1
        load(task_acks_lat=True)
    assert (rec[0].filename, rec[0].lineno) == (__file__, calling_line)


# -- mixing styles ------------------------------------------------------------------------


def test_mixing_old_and_new_names_in_one_update_is_refused() -> None:
    conf = Settings()
    with pytest.raises(ImproperlyConfigured, match=r"'CELERY_ALWAYS_EAGER'.*'broker_url'.*one"):
        conf.update({"CELERY_ALWAYS_EAGER": True, "broker_url": "memory://"})
    assert conf.changes == {}


def test_old_and_new_name_of_the_same_setting_are_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"'CELERY_RESULT_BACKEND'.*'result_backend'"):
        Settings().update({"CELERY_RESULT_BACKEND": "a://", "result_backend": "b://"})
    with pytest.raises(ImproperlyConfigured, match=r"'ENABLE_UTC'.*'CELERY_ENABLE_UTC'"):
        Settings().update({"ENABLE_UTC": True, "CELERY_ENABLE_UTC": False})


# -- config objects -----------------------------------------------------------------------


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a uniquely named module on a temporary sys.path entry; forget it afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"celeriac_test_config_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def test_module_path_loading(write_module: Callable[[str], str]) -> None:
    name = write_module(
        "import os\n"
        "broker_url = 'memory://'\n"
        "task_acks_late = True\n"
        "_private = 1\n"
        "def route(name, *args, **kwargs):\n"
        "    return None\n"
        "task_routes = [route]\n"
    )
    module = resolve_config_object(name)
    assert module is sys.modules[name]
    loaded = settings_from_object(name)
    assert loaded["broker_url"] == "memory://" and loaded["task_acks_late"] is True
    assert loaded["task_routes"] == [module.route]
    assert "os" not in loaded and "_private" not in loaded


def test_module_with_old_names_is_mapped(write_module: Callable[[str], str]) -> None:
    name = write_module("BROKER_URL = 'memory://'\nCELERYD_CONCURRENCY = 2\nDEBUG = False\n")
    assert settings_from_object(resolve_config_object(name)) == {
        "broker_url": "memory://",
        "worker_concurrency": 2,
        "DEBUG": False,
    }


def test_module_mixing_styles_is_refused(write_module: Callable[[str], str]) -> None:
    name = write_module("BROKER_URL = 'memory://'\ntask_acks_late = True\n")
    with pytest.raises(ImproperlyConfigured, match=r"BROKER_URL.*task_acks_late"):
        settings_from_object(name)


def test_module_attr_and_dotted_attr_loading(write_module: Callable[[str], str]) -> None:
    name = write_module("class Config:\n    broker_url = 'memory://'\n")
    assert resolve_config_object("json") is json
    assert resolve_config_object("os.path:join") is os.path.join
    assert resolve_config_object("os.path.join") is os.path.join
    by_colon = resolve_config_object(f"{name}:Config")
    assert by_colon is resolve_config_object(f"{name}.Config")
    assert settings_from_object(by_colon) == {"broker_url": "memory://"}


def test_objects_are_returned_as_they_are() -> None:
    config = {"broker_url": "memory://"}
    assert resolve_config_object(config) is config


def test_import_failures_name_the_spec_and_the_cause(write_module: Callable[[str], str]) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"'no_such_module_xyz'.*No module named"):
        resolve_config_object("no_such_module_xyz")
    with pytest.raises(ImproperlyConfigured, match=r"'json:nothing_here'.*'nothing_here'"):
        resolve_config_object("json:nothing_here")
    with pytest.raises(ImproperlyConfigured, match=r"'json.nothing_here'.*'nothing_here'"):
        resolve_config_object("json.nothing_here")
    broken = write_module("import no_such_dependency_xyz\n")
    with pytest.raises(ImproperlyConfigured, match=f"'{broken}'.*no_such_dependency_xyz"):
        resolve_config_object(broken)


def test_django_style_namespace() -> None:
    class DjangoSettings:
        DEBUG = True
        INSTALLED_APPS = ("app",)
        CELERY_BROKER_URL = "redis://localhost/0"
        CELERY_TASK_ACKS_LATE = True
        CELERY_RESULT_BACKEND = "redis://localhost/1"
        CELERY_WORKER_PREFETCH_MULTIPLIER = 1

        def is_overridden(self, name: str) -> bool:
            return False

    expected = {
        "broker_url": "redis://localhost/0",
        "task_acks_late": True,
        "result_backend": "redis://localhost/1",
        "worker_prefetch_multiplier": 1,
    }
    assert settings_from_object(DjangoSettings(), namespace="CELERY") == expected
    assert settings_from_object(DjangoSettings, namespace="CELERY_") == expected
    mapping = {"CELERY_BROKER_URL": "memory://", "BROKER_URL": "ignored"}
    assert settings_from_object(mapping, namespace="CELERY") == {"broker_url": "memory://"}


def test_instance_without_namespace_skips_its_own_methods() -> None:
    class Config:
        task_acks_late = True

        def helper(self) -> None:
            return None

    assert settings_from_object(Config()) == {"task_acks_late": True}


# -- values and validation ----------------------------------------------------------------


def test_as_seconds() -> None:
    assert as_seconds(None) is None
    assert as_seconds(5) == 5.0
    assert as_seconds(2.5) == 2.5
    assert as_seconds(timedelta(days=1)) == 86400.0
    with pytest.raises(ImproperlyConfigured, match=r"'1d'"):
        as_seconds("1d")  # type: ignore[arg-type]
    with pytest.raises(ImproperlyConfigured, match=r"result_expires is True"):
        as_seconds(True, setting="result_expires")


def test_defaults_validate() -> None:
    validate(Settings())
    validate(Settings({"worker_concurrency": "auto", "task_queue_max_priority": 10}))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("task_serializer", "jsn", "task_serializer = 'jsn'.*json, msgpack"),
        ("result_serializer", None, "result_serializer = None"),
        ("accept_content", "json", "accept_content = 'json'.*list"),
        ("accept_content", ["json", 1], "accept_content"),
        ("result_accept_content", "json", "result_accept_content"),
        ("worker_concurrency", -1, "worker_concurrency = -1.*int >= 0"),
        ("worker_concurrency", "four", "worker_concurrency = 'four'"),
        ("worker_prefetch_multiplier", 1.5, "worker_prefetch_multiplier = 1.5"),
        ("worker_prefetch_multiplier", None, "worker_prefetch_multiplier = None"),
        ("task_default_priority", 300, "task_default_priority = 300.*0 to 255"),
        ("task_queue_max_priority", -1, "task_queue_max_priority = -1"),
        ("result_expires", "1 day", "result_expires is '1 day'"),
    ],
)
def test_validate_rejects(name: str, value: Any, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        validate(Settings({name: value}))


def test_validate_accepts_extra_serializers() -> None:
    validate(Settings({"task_serializer": "custom"}), serializers={"json", "custom"})


def test_generation_moves_with_every_change_so_derived_values_can_be_cached() -> None:
    conf = Settings()
    seen = [conf.generation]
    conf.task_default_queue = "a"
    seen.append(conf.generation)
    conf.update(task_routes={"x": {"queue": "b"}})
    seen.append(conf.generation)
    del conf.task_default_queue
    seen.append(conf.generation)
    conf.pop("task_routes")
    seen.append(conf.generation)
    conf["CELERY_DEFAULT_QUEUE"] = "c"  # an old name counts too
    seen.append(conf.generation)
    conf.clear()
    seen.append(conf.generation)
    assert seen == sorted(set(seen))  # strictly increasing
    _ = conf.task_default_queue, conf["broker_url"]  # reading changes nothing
    assert conf.generation == seen[-1]


def test_attribute_reads_agree_with_item_reads_for_new_and_old_names() -> None:
    conf = Settings()
    conf.BROKER_URL = "redis://h/1"
    assert conf.broker_url == conf["BROKER_URL"] == conf.BROKER_URL == "redis://h/1"
    assert conf.task_default_queue == conf["CELERY_DEFAULT_QUEUE"] == "celery"
    with pytest.raises(AttributeError, match="No setting named"):
        _ = conf.task_defualt_queue
