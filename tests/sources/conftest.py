"""The poller's tests share the control-plane client tests' clock and sleep."""

from tests.clients.keptn.conftest import clock, sleep  # noqa: F401
