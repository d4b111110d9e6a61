"""One exception hierarchy for the whole project.

Every error a user can meet derives from :class:`NestorError`. Each carries a
one-line ``message`` naming what failed and, where there is one, a ``hint``
saying what to do about it. The CLI prints :meth:`NestorError.diagnostics`
in one place and exits with :attr:`NestorError.exit_code`.

Errors never carry key material: messages name files, fields, indexes and
digests, never secrets (a test checks the string forms).
"""

from __future__ import annotations


class NestorError(Exception):
    """Root of every error Nestor raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """Text for a person: what failed and, if known, what to do next."""
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


# -- configuration and usage -------------------------------------------------


class ConfigurationError(NestorError):
    """A file, directory, option or environment setting is unusable."""

    exit_code = 2


class KeyFileError(ConfigurationError):
    """A key file is missing, malformed, unprotected or its passphrase is wrong."""


# -- protocol: structure of messages and files ----------------------------------


class ProtocolError(NestorError):
    """Bytes that do not have the structure the protocol requires."""


class CanonicalEncodingError(ProtocolError):
    """A value cannot be canonically encoded, or bytes are not canonical."""


class EnvelopeError(ProtocolError):
    """A signed envelope is malformed (not a signature failure: see SignatureError)."""


class MessageError(ProtocolError):
    """A pipeline message (grant, job request, result, receipt, log entry) is malformed."""


class PartyCardError(ProtocolError):
    """A party card is malformed or inconsistent."""


# -- verification: structure is fine, but the claim does not hold ---------------


class VerificationError(NestorError):
    """A signature, digest, binding or policy check failed."""


class SignatureError(VerificationError):
    """A signature is missing, made by the wrong key, or does not verify."""


# -- the encrypted-data format --------------------------------------------------


class DatasetFormatError(NestorError):
    """An encrypted dataset file cannot be read or fails authentication.

    Decryption never releases plaintext from a file that raised this error.
    """


class NotADatasetError(DatasetFormatError):
    """The bytes are not a Nestor encrypted dataset (empty, or wrong magic)."""


class UnsupportedFormatError(DatasetFormatError):
    """A format version or AEAD suite that this release does not implement."""


class HeaderError(DatasetFormatError):
    """The header is structurally invalid or was modified after encryption."""


class WrongKeyError(DatasetFormatError):
    """The data key does not match the file's key commitment."""


class ChunkError(DatasetFormatError):
    """A chunk fails authentication, is missing, repeated, moved or foreign."""

    def __init__(self, message: str, *, index: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.index = index


class TruncatedError(DatasetFormatError):
    """The file ends before the data its header declares."""


class TrailingDataError(DatasetFormatError):
    """Bytes follow the final chunk (an appended or duplicated chunk)."""


class CommitmentMismatchError(VerificationError):
    """A ciphertext does not match the commitment it was expected to have."""


# -- HPKE key wrapping ----------------------------------------------------------------


class WrappedKeyError(NestorError):
    """A wrapped (HPKE-sealed) key is malformed, for another recipient or context,
    or was modified."""


# -- contracts and programs ----------------------------------------------------------


class ContractError(ProtocolError):
    """A contract is malformed or inconsistent (before any signature is checked)."""


class ContractVerificationError(VerificationError):
    """A contract is not in effect: signatures missing or invalid, outside its
    validity window, or a program bundle does not match its digest.

    ``problems`` lists every reason, one line each, so a user sees them all.
    """

    def __init__(self, message: str, *, problems: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems

    def diagnostics(self) -> str:
        lines = [self.message, *(f"  - {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class ProgramBundleError(ConfigurationError):
    """A program bundle directory cannot be digested (links, special files, empty)."""


# -- attestation -------------------------------------------------------------------


class AttestationError(VerificationError):
    """Evidence could not be verified. The subclass says which step failed."""


class EvidenceFormatError(AttestationError):
    """Evidence or collateral bytes are malformed, truncated or of the wrong kind."""


class EvidenceSignatureError(AttestationError):
    """The report/quote/document signature does not verify."""


class CertificateChainError(AttestationError):
    """A certificate chain does not lead to a pinned root, or a certificate is not
    valid at the verification time, or does not match the evidence."""


class CollateralError(AttestationError):
    """Collateral (TCB info, QE identity, CRLs) is missing, invalid or outside
    its validity window at the verification time."""


class TcbError(AttestationError):
    """The platform's TCB is not supported (no matching TCB level) or revoked."""


class NonceMismatchError(AttestationError):
    """Authentic evidence made for another nonce: not fresh for this relying party."""


class EvidenceBindingError(AttestationError):
    """Unsigned parts of the evidence (e.g. Azure HCL runtime claims, PCR values)
    do not match the digest a signed structure holds for them."""


class AppraisalError(VerificationError):
    """Verified evidence does not satisfy the contract's enclave policy.

    ``reasons`` lists every failed check."""

    def __init__(self, message: str, *, reasons: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reasons = reasons

    def diagnostics(self) -> str:
        lines = [self.message, *(f"  - {r}" for r in self.reasons)]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)
