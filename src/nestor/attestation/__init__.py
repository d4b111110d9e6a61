"""Remote attestation: verify TEE evidence, normalise it, appraise it.

One verifier module per platform (``intel`` for SGX/TDX DCAP quotes,
``sev_snp`` for AMD SEV-SNP reports, ``nitro`` for AWS Nitro documents,
``azure_vtpm`` for Azure SNP vTPM evidence, ``simulated`` for the simulated
TEE) turns evidence into one :class:`~nestor.attestation.result.AttestationResult`;
``appraisal`` compares a result with a contract's enclave policy.

Pure verification: evidence, collateral and an explicit verification time go
in; a result or an :class:`~nestor.errors.AttestationError` comes out.
"""
