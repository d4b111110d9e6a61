"""The enclave zone: code that runs inside an attested TEE.

Trusted by every party after attestation. It never imports host or client
code. ``service`` is the enclave's main loop, ``tee`` its evidence
producers, ``sandbox`` and ``program_host`` run programs, ``audit`` keeps the
signed log, ``host_link`` is its only (outbound) connection.
"""
