"""A suite written with ``celery.contrib.pytest`` runs on Celeriac with only its imports changed.

The same files run first under Celery 5.7 (so they are a real Celery suite), then under
Celeriac, each in a pytest subprocess laid out by pytester.
"""

from __future__ import annotations

import pytest

from tests.contrib.celery_style_suite import FILES, PYTEST_INI, for_celeriac

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.compat

EXPECTED = {"passed": 11}


def _lay_out(pytester: pytest.Pytester, convert: bool) -> None:
    pytester.makeini(PYTEST_INI)
    pytester.makepyfile(
        **{name: for_celeriac(source) if convert else source for name, source in FILES.items()}
    )


def test_the_suite_passes_on_celery(pytester: pytest.Pytester) -> None:
    _lay_out(pytester, convert=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(**EXPECTED)


def test_the_same_suite_passes_on_celeriac(pytester: pytest.Pytester) -> None:
    _lay_out(pytester, convert=True)
    assert "import celery\n" not in for_celeriac(FILES["test_fixtures"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(**EXPECTED)
