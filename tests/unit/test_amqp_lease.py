"""The AMQP lease settings and names (``lease``); the behaviour is tested on RabbitMQ
in ``tests/integration/test_amqp_consumer_timeout.py``."""

from __future__ import annotations

import pytest

from celeriac.exceptions import ImproperlyConfigured
from celeriac.transports.amqp.lease import LeaseKeeper, LeasePolicy


def test_policy_defaults_follow_rabbitmq_s_consumer_timeout() -> None:
    policy = LeasePolicy.from_options({})
    assert (policy.consumer_timeout, policy.lease_timeout) == (1800, 60)
    assert (policy.hand_over_after, policy.renew_interval) == (900, 300)


@pytest.mark.parametrize("off", [None, False])
def test_policy_without_consumer_timeout_hands_nothing_over(off: object) -> None:
    policy = LeasePolicy.from_options({"consumer_timeout": off, "lease_timeout": 5})
    assert (policy.hand_over_after, policy.renew_interval, policy.lease_timeout) == (None, None, 5)


@pytest.mark.parametrize(
    "options", [{"consumer_timeout": 0}, {"consumer_timeout": "soon"}, {"lease_timeout": -1}]
)
def test_policy_refuses_bad_values(options: dict[str, object]) -> None:
    with pytest.raises(ImproperlyConfigured, match="broker_transport_options"):
        LeasePolicy.from_options(options)


def test_lease_queues_are_per_consumer_and_fit_amqp_s_name_limit() -> None:
    policy = LeasePolicy.from_options({})
    first, second = LeaseKeeper(policy, "w1@host"), LeaseKeeper(policy, "w1@host")
    name = first.lease_queue("celery")
    assert name.startswith("celeriac.lease.w1@host.") and name.endswith(".celery")
    assert second.lease_queue("celery") != name  # same worker name, another consumer
    long_queue = "q" * 250
    assert len(first.lease_queue(long_queue).encode()) <= 255
    assert first.lease_queue(long_queue) != first.lease_queue(long_queue + "x")
    assert len(LeaseKeeper(policy, "é" * 300).lease_queue("celery").encode()) <= 255
