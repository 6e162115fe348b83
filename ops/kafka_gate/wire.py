"""Kafka wire primitives: a bounded reader over a memoryview and a small encoder.

Every read checks the remaining length and raises :class:`Malformed` instead of reading past the end;
lengths and counts are checked against what is left, so a garbled size never allocates much.
``flexible`` switches strings, arrays and bytes to their compact (unsigned varint, length + 1) forms.
"""

from __future__ import annotations

import struct

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")

MAX_ARRAY = 1_000_000  # entries; also bounded by the bytes left (each entry takes at least one byte)


class Malformed(ValueError):
    """The bytes are not what the request's api and version say they should be."""


class Reader:
    """Sequential reads over ``buf`` from ``pos``; ``flexible`` selects the compact encodings."""

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int = 0, *, flexible: bool = False):
        self.buf = memoryview(buf)
        self.pos = pos
        self.flexible = flexible

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise Malformed(f"need {n} bytes at {self.pos}, have {len(self.buf) - self.pos}")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def int8(self) -> int:
        v = self._take(1)[0]
        return v - 256 if v > 127 else v

    def int16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def int32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def int64(self) -> int:
        return _I64.unpack(self._take(8))[0]

    def uuid(self) -> bytes:
        return bytes(self._take(16))

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            b = self._take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise Malformed("varint longer than 5 bytes")

    def _length(self, nullable: bool) -> int | None:
        n = self.uvarint() - 1 if self.flexible else self.int16()
        if n < 0:
            if nullable and n == -1:
                return None
            raise Malformed(f"negative length {n}")
        return n

    def string(self) -> str:
        s = self.nullable_string()
        if s is None:
            raise Malformed("null string where a string is required")
        return s

    def nullable_string(self) -> str | None:
        n = self._length(True)
        if n is None:
            return None
        try:
            return str(self._take(n), "utf-8")
        except UnicodeDecodeError as e:
            raise Malformed(f"string not UTF-8: {e}") from None

    def skip_bytes(self) -> None:
        """A (nullable) bytes field: records, assignments, metadata."""
        n = self.uvarint() - 1 if self.flexible else self.int32()
        if n < -1:
            raise Malformed(f"negative bytes length {n}")
        if n > 0:
            self._take(n)

    def array(self, nullable: bool = False) -> int:
        """An array's entry count (-1 for a null array where ``nullable``)."""
        n = self.uvarint() - 1 if self.flexible else self.int32()
        if n < 0:
            if nullable and n == -1:
                return -1
            raise Malformed(f"negative array length {n}")
        if n > MAX_ARRAY or n > len(self.buf) - self.pos:
            raise Malformed(f"array of {n} entries in {len(self.buf) - self.pos} bytes")
        return n

    def string_array(self, nullable: bool = False) -> list[str] | None:
        n = self.array(nullable)
        return None if n < 0 else [self.string() for _ in range(n)]

    def tags(self) -> None:
        """Tagged fields (flexible versions only): skipped."""
        if not self.flexible:
            return
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())

    def skip(self, n: int) -> None:
        self._take(n)


class Writer:
    """Builds a message body; ``flexible`` as for :class:`Reader`."""

    def __init__(self, *, flexible: bool = False):
        self.out = bytearray()
        self.flexible = flexible

    def int8(self, v: int) -> Writer:
        self.out += struct.pack(">b", v)
        return self

    def int16(self, v: int) -> Writer:
        self.out += _I16.pack(v)
        return self

    def int32(self, v: int) -> Writer:
        self.out += _I32.pack(v)
        return self

    def int64(self, v: int) -> Writer:
        self.out += _I64.pack(v)
        return self

    def uvarint(self, v: int) -> Writer:
        while v >= 0x80:
            self.out.append((v & 0x7F) | 0x80)
            v >>= 7
        self.out.append(v)
        return self

    def _length(self, n: int, *, wide: bool) -> Writer:
        """A length or count (-1: null): compact ``n + 1``, else int32 (bytes, arrays) or int16 (strings)."""
        if self.flexible:
            return self.uvarint(n + 1)
        return self.int32(n) if wide else self.int16(n)

    def string(self, s: str | None) -> Writer:
        raw = None if s is None else s.encode()
        return self.bytes_(raw, wide=False)

    def bytes_(self, b: bytes | None, *, wide: bool = True) -> Writer:
        self._length(-1 if b is None else len(b), wide=wide)
        if b:
            self.out += b
        return self

    def array(self, n: int) -> Writer:
        return self._length(n, wide=True)

    def tags(self) -> Writer:
        if self.flexible:
            self.out.append(0)
        return self

    def raw(self, b: bytes) -> Writer:
        self.out += b
        return self
