"""The exception tree of milagro-tls.

    MilagroError
     ├── ChainError                 chain data, nodes and sources (milagro_tls.chain.errors)
     │    ├── SourceError            a chain source failed or does not know something
     │    ├── NodeError              the embedded regtest node refused something
     │    ├── HeaderRejected         a header broke a consensus rule of its network
     │    └── VerificationError      an anchor does not prove an identity
     ├── IdentityError              birth certificates, locators, key files (milagro_tls.identity)
     └── (later) HandshakeError, StoreError, RoleError

Every layer roots its own exceptions here so that an application can catch
``MilagroError`` once. The verifier's failures are precise classes because the
log needs the reason; the TLS layer later folds them into one alert.
"""


class MilagroError(Exception):
    """Root of every exception this package raises on purpose."""


class IdentityError(MilagroError):
    """A birth certificate, locator or key file is unusable."""


class MalformedInput(IdentityError, ValueError):
    """Bytes or JSON that do not parse as the structure they claim to be."""
