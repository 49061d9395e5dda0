"""Bitcoin Core's JSON-RPC protocol pieces shared by our server and client: error codes,
the error type, and parameter parsing with Core's type-error messages."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from .hashes import from_display_hex
from .tx import COIN, MAX_MONEY

# Core's RPCErrorCode values (src/rpc/protocol.h).
RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_INVALID_PARAMETER = -8
RPC_DESERIALIZATION_ERROR = -22
RPC_VERIFY_ERROR = -25
RPC_VERIFY_REJECTED = -26
RPC_VERIFY_ALREADY_IN_CHAIN = -27
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_PARSE_ERROR = -32700


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_JSON_TYPES = {type(None): "null", bool: "bool", dict: "object", list: "array", int: "number",
               float: "number", Decimal: "number", str: "string"}


def _type_error(value, expected: str) -> RpcError:
    got = _JSON_TYPES.get(type(value), "unknown")
    return RpcError(RPC_TYPE_ERROR, f"JSON value of type {got} is not of expected type {expected}")


def as_int(value, name: str) -> int:
    """A JSON number that is an integer in int64 range (Core's getInt), else RPC_TYPE_ERROR."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise _type_error(value, "number")
    try:
        integral = int(value)
    except (ValueError, OverflowError):          # NaN, Infinity
        raise RpcError(RPC_TYPE_ERROR, "JSON integer out of range") from None
    if value != integral:
        raise RpcError(RPC_TYPE_ERROR, f"{name}: not an integer")
    if not -(1 << 63) <= integral < (1 << 63):
        raise RpcError(RPC_TYPE_ERROR, "JSON integer out of range")
    return integral


def as_vout(value, name: str) -> int:
    n = as_int(value, name)
    if not 0 <= n <= 0xFFFFFFFF:
        raise RpcError(RPC_INVALID_PARAMETER, "Invalid parameter, vout out of range")
    return n


def as_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error(value, "bool")
    return value


def as_verbosity(value, name: str) -> int:
    """Core's ParseVerbosity with allow_bool: true/false or a number."""
    return int(value) if isinstance(value, bool) else as_int(value, name)


def as_str(value, name: str) -> str:
    if not isinstance(value, str):
        raise _type_error(value, "string")
    return value


def as_hash(value, name: str) -> bytes:
    """Core's ParseHashV, with its messages."""
    text = as_str(value, name)
    if len(text) != 64:
        raise RpcError(RPC_INVALID_PARAMETER, f"{name} must be of length 64 (not {len(text)}, for '{text}')")
    try:
        return from_display_hex(text)
    except ValueError:
        raise RpcError(RPC_INVALID_PARAMETER, f"{name} must be hexadecimal string (not '{text}')") from None


def as_amount(value, name: str) -> int:
    """Core's AmountFromValue: BTC as a number or numeric string, to satoshis."""
    if not isinstance(value, (int, float, Decimal, str)) or isinstance(value, bool):
        raise _type_error(value, "number")
    try:
        sats = Decimal(str(value)) * COIN
    except InvalidOperation:
        raise RpcError(RPC_TYPE_ERROR, "Invalid amount") from None
    if sats < 0 or sats > MAX_MONEY:
        raise RpcError(RPC_TYPE_ERROR, "Amount out of range")
    if sats != sats.to_integral_value():
        raise RpcError(RPC_TYPE_ERROR, "Invalid amount")
    return int(sats)


def as_array(value, name: str) -> list:
    if not isinstance(value, list):
        raise _type_error(value, "array")
    return value
