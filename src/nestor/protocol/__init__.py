"""The shared protocol: canonical encoding, signed envelopes, party cards.

Pure: bytes and explicit times in, verified objects or a NestorError out.
No file, network or clock access happens in this package.
"""
