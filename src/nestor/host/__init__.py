"""The host zone: the untrusted cloud side (API, store, queue, dispatcher).

It only ever holds public data, signed messages and ciphertext, and never
imports enclave or client code. (Filled in by the pipeline work.)
"""
