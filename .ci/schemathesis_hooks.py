"""Schemathesis hooks for .ci/run (loaded through SCHEMATHESIS_HOOKS).

openapi.yaml uses one string format that JSON Schema does not define: `cidr` (an IPv4 or
IPv6 network in CIDR notation, or one address, as Kubernetes' schemas use it). Without a
strategy for it schemathesis would send any string matching the pattern as valid data, and
count the server's rightful 400 as a failure of its positive-data check.
"""

import ipaddress

import schemathesis
from hypothesis import strategies as st


def _networks(network_class, bits):
    return st.builds(
        lambda address, prefix: str(network_class((address, prefix), strict=False)),
        st.integers(min_value=0, max_value=2**bits - 1),
        st.integers(min_value=0, max_value=bits),
    )


def _addresses(address_class, bits):
    return st.builds(
        lambda address: str(address_class(address)),
        st.integers(min_value=0, max_value=2**bits - 1),
    )


schemathesis.openapi.format(
    "cidr",
    st.one_of(
        _networks(ipaddress.IPv4Network, 32),
        _networks(ipaddress.IPv6Network, 128),
        _addresses(ipaddress.IPv4Address, 32),
        _addresses(ipaddress.IPv6Address, 128),
    ),
)
