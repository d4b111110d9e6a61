"""The enclave zone: code that runs inside an attested TEE.

Trusted by every party after attestation. It never imports host or client
code. (Filled in by the pipeline work; see docs/architecture.md.)
"""
