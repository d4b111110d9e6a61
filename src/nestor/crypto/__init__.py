"""Cryptographic recipes over pyca/cryptography.

The only package that touches primitives directly. Everything else calls the
recipes here: ``seal_key``/``open_key`` (HPKE), the dataset format
(``nestor.crypto.dataset``), signing keys (``nestor.crypto.signing``).
"""
