"""The client zone: code that runs on a party's own machine.

It holds the party's private keys, its plaintext dataset and its decrypted
results. It never imports enclave or host internals.
"""
