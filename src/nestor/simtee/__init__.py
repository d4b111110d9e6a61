"""The simulated TEE: a stand-in for TEE hardware during development.

It plays the *vendor*: a per-installation root key (kept in the user's config
directory) signs evidence that carries a measurement of the enclave's code
and the enclave's report data. The cryptography is real; the protection is
not: nothing stops the host from reading the enclave's memory. Evidence says
"simulated" in its payload type, its platform and a warning field, and every
appraisal refuses it unless the contract accepts the simulated platform.
"""
