"""Program bundles: the code a contract names, and its reproducible digest.

Shared by the client (which computes a digest to put in the contract) and the
enclave (which recomputes it before running a program). Reads files; holds no
secrets.
"""
