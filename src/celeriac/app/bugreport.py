"""``app.bugreport()``: versions, platform and settings for a bug report, in Celery's layout.

The same text is ``celeriac report`` and the worker's ``inspect report`` reply. The layout
is Celery 5.7's (a ``software ->`` block, then ``platform``, ``loader``, ``settings`` and the
settings themselves), under Celeriac's own name and version: nothing here claims to be
Celery. Every credential is masked (``celeriac._masking``), the result backend read from
the settings as they are now, so a change to ``app.conf.result_backend`` shows at once.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Protocol

from celeriac._masking import MASK, mask_url
from celeriac._version import __version__

if TYPE_CHECKING:
    from celeriac.app.settings import Settings

__all__ = ["bugreport"]


class Reported(Protocol):
    """What the report reads of an app (``celeriac.Celery`` is one)."""

    @property
    def conf(self) -> Settings: ...

    @property
    def loader(self) -> object: ...


_LAYOUT = """
software -> celeriac:{version} py:{python}
            broker:{broker}
platform -> system:{system} arch:{arch}
            kernel version:{kernel} imp:{implementation}
loader   -> {loader}
settings -> transport:{transport} results:{results}

{settings}
"""


def bugreport(app: Reported) -> str:
    """The report text for ``app`` (what Celery's ``app.bugreport()`` returns)."""
    conf = app.conf
    broker = str(conf.broker_url or "")
    results = str(conf.result_backend or "")
    loader = type(app.loader)
    return _LAYOUT.format(
        version=__version__,
        python=platform.python_version(),
        broker=mask_url(broker, mask=MASK) if broker else "disabled",
        system=platform.system(),
        arch=", ".join(part for part in platform.architecture() if part),
        kernel=platform.release(),
        implementation=platform.python_implementation(),
        loader=f"{loader.__module__}.{loader.__qualname__}",
        transport=broker.partition("://")[0] if "://" in broker else "",
        results=mask_url(results, mask=MASK) if results else "disabled",
        settings=conf.humanize(),
    )
