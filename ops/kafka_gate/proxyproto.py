"""PROXY protocol v2 header, as haproxy's ``send-proxy-v2-ssl-cn`` writes it.

``signature (12) | version/command (1) | family (1) | length (2) | addresses | TLVs``. The gate needs the
``PP2_TYPE_SSL`` TLV (0x20: client flags u8, verify u32, sub-TLVs) with a successful verify, a client
certificate presented on the connection, and the ``PP2_SUBTYPE_SSL_CN`` sub-TLV (0x22): the identity.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
HEADER_LEN = 16
MAX_PAYLOAD = 4096  # haproxy's header with the SSL TLVs is a few hundred bytes

PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02

_ADDRESS_LEN = {0x11: 12, 0x12: 12, 0x21: 36, 0x22: 36, 0x31: 216, 0x32: 216}


class ProxyError(ValueError):
    """Not a usable PROXY v2 header; the message is the reason logged."""


@dataclass(frozen=True)
class ProxyInfo:
    peer: str  # the client's address as haproxy saw it ("" for UNSPEC/UNIX)
    cn: str | None
    verify: int | None  # 0: the certificate verified
    tls_version: str | None


def payload_length(header: bytes) -> int:
    """Check the 16 fixed bytes; the number of bytes that follow them."""
    if len(header) != HEADER_LEN or header[:12] != SIGNATURE:
        raise ProxyError("no PROXY v2 signature")
    if header[12] >> 4 != 2:
        raise ProxyError(f"PROXY version {header[12] >> 4}")
    if header[12] & 0x0F != 1:
        raise ProxyError("PROXY command is not PROXY (LOCAL or unknown)")
    n = struct.unpack(">H", header[14:16])[0]
    if n > MAX_PAYLOAD:
        raise ProxyError(f"PROXY header of {n} bytes")
    return n


def parse(header: bytes, payload: bytes) -> ProxyInfo:
    """The peer and TLS facts of a header (``header``: its 16 fixed bytes)."""
    family = header[13]
    alen = _ADDRESS_LEN.get(family, 0 if family == 0 else -1)
    if alen < 0:
        raise ProxyError(f"PROXY family 0x{family:02x}")
    if len(payload) < alen:
        raise ProxyError("PROXY addresses truncated")
    peer = ""
    if family == 0x11:
        peer = f"{'.'.join(str(b) for b in payload[0:4])}:{struct.unpack('>H', payload[8:10])[0]}"
    elif family == 0x21:
        peer = f"[{payload[0:16].hex(':', 2)}]:{struct.unpack('>H', payload[32:34])[0]}"
    cn = tls_version = None
    verify = None
    client = 0
    for kind, value in _tlvs(payload[alen:]):
        if kind != PP2_TYPE_SSL:
            continue
        if len(value) < 5:
            raise ProxyError("PP2_TYPE_SSL shorter than 5 bytes")
        client = value[0]
        verify = struct.unpack(">I", value[1:5])[0]
        for sub, sval in _tlvs(value[5:]):
            if sub == PP2_SUBTYPE_SSL_CN:
                cn = _text(sval, "CN")
            elif sub == PP2_SUBTYPE_SSL_VERSION:
                tls_version = _text(sval, "TLS version")
    if verify is None:
        raise ProxyError("no PP2_TYPE_SSL TLV (not a TLS connection?)")
    if not client & PP2_CLIENT_SSL or not client & PP2_CLIENT_CERT_CONN:
        raise ProxyError("no client certificate on the connection")
    if verify != 0:
        raise ProxyError(f"client certificate not verified (verify={verify})")
    if not cn:
        raise ProxyError("client certificate without CN")
    return ProxyInfo(peer, cn, verify, tls_version)


def _tlvs(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        if pos + 3 > len(data):
            raise ProxyError("PROXY TLV truncated")
        kind, n = data[pos], struct.unpack(">H", data[pos + 1 : pos + 3])[0]
        if pos + 3 + n > len(data):
            raise ProxyError(f"PROXY TLV 0x{kind:02x} of {n} bytes overruns the header")
        out.append((kind, data[pos + 3 : pos + 3 + n]))
        pos += 3 + n
    return out


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProxyError(f"{what} not UTF-8") from None


def encode(
    cn: str | None, *, peer: tuple[str, int] = ("127.0.0.1", 40000), verify: int = 0, client: int = 0x07
) -> bytes:
    """A header as haproxy writes it (tests)."""
    ip = bytes(int(x) for x in peer[0].split("."))
    addresses = ip + bytes([127, 0, 0, 1]) + struct.pack(">HH", peer[1], 9093)
    subs = b"\x21" + struct.pack(">H", 7) + b"TLSv1.3"
    if cn is not None:
        raw = cn.encode()
        subs += bytes([PP2_SUBTYPE_SSL_CN]) + struct.pack(">H", len(raw)) + raw
    ssl = bytes([client]) + struct.pack(">I", verify) + subs
    tlvs = bytes([PP2_TYPE_SSL]) + struct.pack(">H", len(ssl)) + ssl
    payload = addresses + tlvs
    return SIGNATURE + bytes([0x21, 0x11]) + struct.pack(">H", len(payload)) + payload
