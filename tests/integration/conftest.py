"""
Fixtures the integration tests share.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from tests.integration.test_federation import Network


@pytest.fixture
def network(tmp_path):
    """
    A DNS server on loopback and the fmtp servers of its zones, all
    stopped at the end of the test.
    """
    net = Network(tmp_path)
    yield net
    pytest_twisted.blockon(Deferred.fromCoroutine(net.stop()))
