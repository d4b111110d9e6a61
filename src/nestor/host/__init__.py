"""The host zone: the untrusted cloud side (API, store, queue, dispatcher).

It only ever holds public data, signed messages and ciphertext, and never
imports enclave or client code. ``app`` is the HTTP API, ``store`` the
database and job queue, ``blobs`` the blob directory, ``dispatcher`` starts
enclave processes.
"""
