"""The app's settings: Celery's lowercase names over their defaults, with old names mapped.

``Settings`` is the mapping behind ``app.conf``. Values set explicitly are layered over a
private copy of ``DEFAULTS``. Every spelling a user may write (``broker_url``,
``BROKER_URL``, ``conf.CELERY_RESULT_BACKEND``) becomes the lowercase name on the way in,
so the rest of Celeriac only reads the new names. A name that looks meant for Celery but is
unknown is kept and warned about (``UnknownSettingWarning``, with the closest names).

``resolve_config_object`` and ``settings_from_object`` are the reading side of
``config_from_object``; ``as_seconds`` reads time-valued settings; ``validate`` catches
common mistakes early. Nothing here reads the environment or keeps global state.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import types
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, MutableMapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celeriac.app._setting_names import (
    DEFAULTS,
    NAMESPACES,
    OLD_TO_NEW,
    canonical_name,
    censor,
    did_you_mean,
    is_unknown_celery_name,
    normalize,
)
from celeriac.app._settings_support import check_unsupported
from celeriac.exceptions import ImproperlyConfigured, UnknownSettingWarning
from celeriac.protocol.compression import COMPRESSION_METHODS

if TYPE_CHECKING:
    from _typeshed import SupportsKeysAndGetItem

__all__ = [
    "DEFAULTS",
    "OLD_TO_NEW",
    "SERIALIZERS",
    "Settings",
    "as_seconds",
    "resolve_config_object",
    "settings_from_object",
    "validate",
]

#: Serializer names ``validate`` accepts by default.
SERIALIZERS: frozenset[str] = frozenset({"json", "pickle", "yaml", "msgpack", "auth"})

_MISSING: Any = object()


class Settings(MutableMapping[str, Any]):
    """Explicit values over Celery's defaults; reads and writes accept old names too.

    ``conf['broker_url']``, ``conf.broker_url`` and ``conf.BROKER_URL`` are the same value.
    Deleting a setting reverts it to its default (``KeyError`` if it was not set).
    """

    _defaults: dict[str, Any]
    _changes: dict[str, Any]
    _generation: int
    _old_names: set[str]

    def __init__(self, changes: Mapping[str, Any] | None = None) -> None:
        self._defaults = copy.deepcopy(dict(DEFAULTS))
        self._changes = {}
        self._generation = 0
        self._old_names = set()
        if changes:
            self._merge(changes, stacklevel=2)

    # -- mapping ---------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        name = canonical_name(key)
        if name in self._changes:
            return self._changes[name]
        if name in self._defaults:
            return self._defaults[name]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._store(key, value, stacklevel=2)

    def __delitem__(self, key: str) -> None:
        try:
            del self._changes[canonical_name(key)]
        except KeyError:
            raise KeyError(key) from None
        self._generation += 1

    def __iter__(self) -> Iterator[str]:
        yield from self._defaults
        yield from (name for name in self._changes if name not in self._defaults)

    def __len__(self) -> int:
        return len(self._defaults) + sum(name not in self._defaults for name in self._changes)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        name = canonical_name(key)
        return name in self._changes or name in self._defaults

    def __repr__(self) -> str:
        return f"<Settings: {len(self._changes)} set explicitly>"

    def update(
        self,
        mapping: SupportsKeysAndGetItem[str, Any] | Iterable[tuple[str, Any]] | None = None,
        /,
        **kwargs: Any,
    ) -> None:
        """Set many values at once, by new or old names (not both styles in one call)."""
        given = dict(mapping) if mapping is not None else {}
        given.update(kwargs)
        self._merge(given, stacklevel=2)

    def merge(self, mapping: Mapping[str, Any], *, stacklevel: int = 1) -> None:
        """``update`` for code loading settings on a user's behalf (``Celery(**kwargs)``).

        ``stacklevel`` counts frames above the caller, as ``warnings.warn`` does, so an
        unknown-setting warning points at the user's line rather than the loader's.
        """
        self._merge(mapping, stacklevel=stacklevel + 1)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        self._store(key, default, stacklevel=2)
        return default

    def add_defaults(self, defaults: Mapping[str, Any]) -> None:
        """Add or replace default values (``app.add_defaults``): below explicit settings,
        and names outside Celery's table allowed (a plugin's own settings)."""
        for key, value in defaults.items():
            self._defaults[canonical_name(key)] = value
        self._generation += 1

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove an explicitly set value (reverting to the default) and return it."""
        name = canonical_name(key)
        if name in self._changes:
            self._generation += 1
            return self._changes.pop(name)
        if default is _MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[str, Any]:
        if not self._changes:
            raise KeyError("popitem(): no setting is set explicitly")
        self._generation += 1
        return self._changes.popitem()

    def clear(self) -> None:
        """Forget every explicitly set value; the defaults remain."""
        self._changes.clear()
        self._generation += 1

    def copy(self) -> Settings:
        clone = Settings()
        clone._defaults = copy.deepcopy(self._defaults)
        clone._changes = dict(self._changes)
        clone._old_names = set(self._old_names)
        return clone

    # -- attributes ------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Fast path: both dicts are keyed by new names, the ones code reads most.
        values = self.__dict__
        if "_changes" in values:
            if name in values["_changes"]:
                return values["_changes"][name]
            if name in values["_defaults"]:
                return values["_defaults"][name]
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"No setting named {name!r}{did_you_mean(name)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or hasattr(type(self), name):
            object.__setattr__(self, name, value)
        else:
            self._store(name, value, stacklevel=2)

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
            return
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"Setting {name!r} is not set explicitly") from None

    def __dir__(self) -> Iterable[str]:
        return [*super().__dir__(), *self]

    # -- introspection ---------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Counts changes of explicitly set values: whatever is derived from the settings
        can be cached until it moves. (A value mutated in place does not count.)"""
        return self._generation

    @property
    def deprecated_settings(self) -> list[str] | None:
        """The old (Celery 3) names the settings were given by, sorted; None when none.
        Celery's ``conf`` reply (``inspect conf``) carries them under this name."""
        return sorted(self._old_names) or None

    @property
    def changes(self) -> dict[str, Any]:
        """Only the explicitly set values, by new name."""
        return dict(self._changes)

    def table(self, with_defaults: bool = False, censored: bool = True) -> dict[str, Any]:
        """The values by name, sorted; passwords and URL credentials masked when censored."""
        source = self if with_defaults else self._changes
        return {
            name: censor(name, source[name]) if censored else source[name]
            for name in sorted(source)
        }

    def humanize(self, with_defaults: bool = False, censored: bool = True) -> str:
        """One ``name: repr(value)`` line per setting, sorted by name."""
        table = self.table(with_defaults, censored)
        return "\n".join(f"{name}: {value!r}" for name, value in table.items())

    def find_option(self, name: str) -> tuple[str, Any]:
        """``(new name, current value)`` for a new, old or namespace-less name.

        ``find_option('prefetch_multiplier')`` finds ``worker_prefetch_multiplier``.
        Raises ``KeyError`` naming the closest known names.
        """
        lowered = name.lower()
        candidates = [canonical_name(name), lowered, canonical_name(name.upper())]
        candidates += [f"{namespace}_{lowered}" for namespace in NAMESPACES]
        for candidate in candidates:
            if candidate in self:
                return candidate, self[candidate]
        raise KeyError(f"No setting named {name!r}{did_you_mean(name)}")

    # -- internals -------------------------------------------------------------------------

    def _merge(self, given: Mapping[str, Any], *, stacklevel: int) -> None:
        self._old_names.update(key for key in given if key in OLD_TO_NEW)
        for name, value in normalize(given).items():
            self._store(name, value, stacklevel=stacklevel + 1)

    def _store(self, key: str, value: Any, *, stacklevel: int) -> None:
        name = canonical_name(key)
        if key in OLD_TO_NEW:
            self._old_names.add(key)
        if is_unknown_celery_name(name):
            warnings.warn(
                f"Unknown setting {name!r}{did_you_mean(name)} (the value is kept, "
                "but nothing in Celeriac reads it)",
                UnknownSettingWarning,
                stacklevel=stacklevel + 1,
            )
        self._changes[name] = value
        self._generation += 1


def resolve_config_object(spec: str | object) -> object:
    """``'pkg.module'`` -> the module; ``'pkg.module:attr'`` or ``'pkg.module.attr'`` -> attr.

    Any other object is returned as is. Failing imports raise ``ImproperlyConfigured``.
    """
    if not isinstance(spec, str):
        return spec
    module_name, colon, attr = spec.partition(":")
    if colon:
        return _attribute(_import(module_name, spec), attr, spec)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        parent, _, attr = spec.rpartition(".")
        if exc.name != spec or not parent:
            raise _cannot_import(spec, exc) from exc
        return _attribute(_import(parent, spec), attr, spec)
    except (ImportError, ValueError, TypeError) as exc:
        raise _cannot_import(spec, exc) from exc


def _import(module_name: str, spec: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
    except (ImportError, ValueError, TypeError) as exc:
        raise _cannot_import(spec, exc) from exc


def _attribute(owner: object, path: str, spec: str) -> object:
    for part in path.split("."):
        try:
            owner = getattr(owner, part)
        except AttributeError as exc:
            raise ImproperlyConfigured(
                f"Cannot load the configuration {spec!r}: {owner!r} has no attribute {part!r}"
            ) from exc
    return owner


def _cannot_import(spec: str, exc: BaseException) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"Cannot import the configuration {spec!r}: {exc}. "
        "Check the dotted path and that its package is on sys.path."
    )


def settings_from_object(obj: object, *, namespace: str | None = None) -> dict[str, Any]:
    """The settings a module, class, instance, Mapping or import path holds, by new name.

    Without a namespace every public name is taken (old names mapped to new ones, mixing
    refused). With ``namespace='CELERY'`` only ``CELERY_*`` names are taken, the prefix
    stripped and the rest lowercased: ``CELERY_BROKER_URL`` -> ``broker_url``.
    """
    if isinstance(obj, str):
        obj = resolve_config_object(obj)
    if isinstance(obj, Mapping):
        items = {key: value for key, value in obj.items() if isinstance(key, str)}
    else:
        items = _public_attributes(obj)
    if namespace is None:
        return normalize(items)
    prefix = namespace.rstrip("_") + "_"
    return {
        key[len(prefix) :].lower(): value
        for key, value in items.items()
        if key.startswith(prefix) and len(key) > len(prefix)
    }


def _public_attributes(obj: object) -> dict[str, Any]:
    """Public attributes, minus imported modules and the object's own methods."""
    found: dict[str, Any] = {}
    for name in dir(obj):
        if name.startswith("_"):
            continue
        value = getattr(obj, name, _MISSING)
        if value is _MISSING or isinstance(value, types.ModuleType):
            continue
        if inspect.ismethod(value) and value.__self__ is obj:
            continue
        found[name] = value
    return found


def as_seconds(
    value: float | int | timedelta | None, *, setting: str | None = None
) -> float | None:
    """Seconds as a float for a time-valued setting (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    where = f"Setting {setting}" if setting else "A time value"
    raise ImproperlyConfigured(
        f"{where} is {value!r} ({type(value).__name__}); expected a number of seconds, "
        "a datetime.timedelta, or None."
    )


def _invalid(name: str, value: Any, allowed: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"Setting {name} = {value!r} is not valid; expected {allowed}.")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_content_list(value: Any) -> bool:
    kinds = (list, tuple, set, frozenset)
    return isinstance(value, kinds) and all(isinstance(item, str) for item in value)


def validate(settings: Settings, *, serializers: Collection[str] = SERIALIZERS) -> None:
    """Raise ``ImproperlyConfigured`` for a setting whose value cannot be right."""
    for name in ("task_serializer", "result_serializer", "event_serializer"):
        value = settings[name]
        if not isinstance(value, str) or value not in serializers:
            raise _invalid(name, value, f"one of {', '.join(sorted(serializers))}")
    for name in ("accept_content", "result_accept_content"):
        value = settings[name]
        if value is None and name == "result_accept_content":
            continue  # None: the same as accept_content
        if not _is_content_list(value):
            raise _invalid(name, value, "a list of serializer names or content types")
    concurrency = settings["worker_concurrency"]
    auto = isinstance(concurrency, str) and concurrency.strip().lower() == "auto"
    if concurrency is not None and not auto and not _is_count(concurrency):
        raise _invalid("worker_concurrency", concurrency, "an int >= 0, 'auto' or None")
    multiplier = settings["worker_prefetch_multiplier"]
    if not _is_count(multiplier):
        raise _invalid("worker_prefetch_multiplier", multiplier, "an int >= 0")
    for name in ("task_default_priority", "task_queue_max_priority"):
        value = settings[name]
        if value is not None and not (_is_count(value) and value <= 255):
            raise _invalid(name, value, "an int from 0 to 255, or None")
    for name in ("result_expires", "task_time_limit", "task_soft_time_limit"):
        as_seconds(settings[name], setting=name)
    check_unsupported(settings)
    for name in ("task_compression", "result_compression"):
        method = settings[name]
        if method and method not in COMPRESSION_METHODS:
            raise _invalid(name, method, f"None or one of {', '.join(COMPRESSION_METHODS)}")
