"""The tests' own port range (tests/fixtures/ports.py)."""

from __future__ import annotations

import socket

import pytest

from tests.fixtures.ports import _HIGH, _LOW, free_port, port_range


def test_ports_come_from_the_range_below_the_kernels_and_are_not_handed_out_twice() -> None:
    ports = [free_port() for _ in range(50)]
    assert all(_LOW <= p <= _HIGH for p in ports)
    assert len(set(ports)) == 50
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    assert ephemeral_low > _HIGH  # the kernel never hands these out on its own


def test_a_bound_port_is_skipped() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        held = taken.getsockname()[1]
        assert held not in {free_port() for _ in range(_HIGH - _LOW)}


@pytest.mark.parametrize("text", ["", "20000", "a-b", "900-2000", "30000-20000", "1-70000"])
def test_a_malformed_range_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="TEST_PORT_RANGE"):
        port_range(text)


def test_a_range_is_read() -> None:
    assert port_range("27000-32000") == (27000, 32000)
