"""Pinned trust anchors: vendor roots by SHA-256 fingerprint of their DER.

Certificates shipped in ``roots/`` are loaded only if their fingerprint is
one of the pinned values below: a replaced file cannot add trust.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from nestor.errors import CertificateChainError

INTEL_SGX_ROOT_CA: Final = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
AMD_ARK_MILAN: Final = "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"
AMD_ARK_GENOA: Final = "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"
AMD_ARK_TURIN: Final = "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"
AWS_NITRO_ROOT_G1: Final = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

AMD_ARKS: Final = {"Milan": AMD_ARK_MILAN, "Genoa": AMD_ARK_GENOA, "Turin": AMD_ARK_TURIN}


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@cache
def _bundled(name: str) -> tuple[x509.Certificate, ...]:
    data = resources.files("nestor.attestation").joinpath("roots", name).read_bytes()
    return tuple(x509.load_pem_x509_certificates(data))


def amd_chain(product: str) -> tuple[x509.Certificate, x509.Certificate]:
    """(ASK, ARK) for a product (Milan, Genoa, Turin), ARK pinned."""
    name = {
        "Milan": "ask_ark_milan.pem",
        "Genoa": "ask_ark_genoa.pem",
        "Turin": "ask_ark_turin.pem",
    }
    if product not in name:
        raise CertificateChainError(f"no pinned AMD root for product {product!r}")
    ask, ark = _bundled(name[product])[:2]
    _require_pinned(ark, AMD_ARKS[product], f"AMD ARK-{product}")
    return ask, ark


def amd_asvk_chain_milan() -> tuple[x509.Certificate, x509.Certificate]:
    """(ASVK, ARK) for VLEK-signed Milan reports, ARK pinned."""
    certs = _bundled("milan_ask_ark_asvk.pem")
    arks = [c for c in certs if fingerprint(c) == AMD_ARK_MILAN]
    if not arks or len(certs) < 3:
        raise CertificateChainError("the bundled Milan ASVK chain lacks the pinned ARK-Milan")
    return certs[2], arks[0]


def aws_nitro_root() -> x509.Certificate:
    (root,) = _bundled("aws_nitro_enclaves_root_g1.pem")
    _require_pinned(root, AWS_NITRO_ROOT_G1, "AWS Nitro Enclaves Root-G1")
    return root


def _require_pinned(cert: x509.Certificate, expected: str, what: str) -> None:
    if fingerprint(cert) != expected:
        raise CertificateChainError(
            f"the bundled {what} certificate does not have the pinned fingerprint {expected}"
        )
