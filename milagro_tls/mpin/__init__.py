"""M-Pin on BLS12-381 with distributed key shares (pure maths, no IO).

    curve      group elements: checked encodings, uniform scalars, secret_mul (split products:
               the library's scalar multiplication is not constant time), RFC 9380 hash_to_g1
    identity   ID = issuer ‖ sub (length-prefixed), H(ID), time-permit points, day numbers
    shares     a D-TA's MasterSecret (0600 key file), CS_i / TP_i / SS_i, SignedShare, combining
    protocol   the M-Pin 2-pass protocol with the PIN extracted, sans-IO (MpinClient, MpinServer)
    errors     MpinError and one subclass per reason

Formulas: ../shared/reference/milagro-mpin.md section 2.3; design: issue 15.
"""
from .curve import (
    G1Point, G2Point, Scalar, decode_g1, decode_g2, encode_g1, encode_g2, hash_to_g1,
    random_scalar, secret_mul,
)
from .errors import (
    AuthenticationFailed, ExpiredPermit, InvalidMasterSecret, InvalidPin, MalformedIdentity,
    MalformedMessage, MalformedPoint, MalformedScalar, MalformedShare, MpinError,
    ProtocolStateError, ShareMismatch, ShareSignatureError,
)
from .identity import (
    DST_ID, DST_TP, MpinIdentity, authentication_point, day_number, decode_identity,
    encode_identity, hash_identity, hash_time_permit, today,
)
from .protocol import (
    Challenge, MpinClient, MpinServer, Pass1, Pass2, PendingAuth, extract_pin,
)
from .shares import (
    MasterSecret, ShareKind, SignedShare, client_secret_share, combine_g1, combine_g2,
    issue_client_secret, issue_server_secret, issue_time_permit, server_secret_share, sign_share,
    time_permit_share, verify_share,
)

__all__ = [
    "G1Point", "G2Point", "Scalar", "decode_g1", "decode_g2", "encode_g1", "encode_g2",
    "hash_to_g1", "random_scalar", "secret_mul",
    "AuthenticationFailed", "ExpiredPermit", "InvalidMasterSecret", "InvalidPin",
    "MalformedIdentity", "MalformedMessage", "MalformedPoint", "MalformedScalar", "MalformedShare",
    "MpinError", "ProtocolStateError", "ShareMismatch", "ShareSignatureError",
    "DST_ID", "DST_TP", "MpinIdentity", "authentication_point", "day_number", "decode_identity",
    "encode_identity", "hash_identity", "hash_time_permit", "today",
    "MasterSecret", "ShareKind", "SignedShare", "client_secret_share", "combine_g1", "combine_g2",
    "issue_client_secret", "issue_server_secret", "issue_time_permit", "server_secret_share",
    "sign_share", "time_permit_share", "verify_share",
    "Challenge", "MpinClient", "MpinServer", "Pass1", "Pass2", "PendingAuth", "extract_pin",
]
