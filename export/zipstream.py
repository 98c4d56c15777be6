"""A ZIP archive written front to back, for streaming, with memory that does not grow with it.

Python's ``zipfile`` keeps a ``ZipInfo`` per member until it closes (half a gigabyte for a
YOLO export of a million label files) and wants a seekable file for large members. This
writer sends each member's local header, data and a data descriptor as it goes, spools the
central directory's records to a temporary file, and appends them at the end. Every member is
written in the ZIP64 format (sizes and offsets in the ZIP64 extra field), so neither the
number of members nor the archive's size is limited; ``zipfile``, ``unzip`` and 7-Zip read it.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Final

_LOCAL: Final = 0x04034B50
_DESCRIPTOR: Final = 0x08074B50
_CENTRAL: Final = 0x02014B50
_END64: Final = 0x06064B50
_LOCATOR64: Final = 0x07064B50
_END: Final = 0x06054B50
_VERSION: Final = 45  # ZIP64
# Bit 3: sizes and CRC follow the data; bit 11: the name is UTF-8.
_FLAGS: Final = 0x0008 | 0x0800
_STORED: Final = 0
_DEFLATED: Final = 8
_MAX32: Final = 0xFFFFFFFF
_MAX16: Final = 0xFFFF
# Fast deflate: exports are large and streamed; level 1 is several times faster than the
# default 6 on JSON, for output about a fifth larger.
_LEVEL: Final = 1


def _dos_time(moment: datetime) -> tuple[int, int]:
    year = max(moment.year, 1980)
    date = ((year - 1980) << 9) | (moment.month << 5) | moment.day
    time = (moment.hour << 11) | (moment.minute << 5) | (moment.second // 2)
    return time, date


class ZipStream:
    """Members written one after the other to ``out``; :meth:`close` writes the directory."""

    def __init__(self, out: Callable[[bytes], object], *, modified: datetime | None = None) -> None:
        self._out = out
        self._offset = 0
        self._time, self._date = _dos_time(modified or datetime.now())
        self._directory = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._members = 0
        self._open: Member | None = None
        self.closed = False

    def _send(self, data: bytes) -> None:
        if data:
            self._out(data)
            self._offset += len(data)

    def open(self, name: str, *, compress: bool = True) -> Member:
        """A member to write in pieces; only one may be open at a time."""
        if self._open is not None:
            raise RuntimeError(f"member {self._open.name!r} is still open")
        if self.closed:
            raise RuntimeError("the archive is closed")
        encoded = name.encode()
        method = _DEFLATED if compress else _STORED
        zip64 = struct.pack("<HHQQ", 0x0001, 16, 0, 0)
        header = struct.pack(
            "<IHHHHHIIIHH",
            _LOCAL,
            _VERSION,
            _FLAGS,
            method,
            self._time,
            self._date,
            0,
            _MAX32,
            _MAX32,
            len(encoded),
            len(zip64),
        )
        member = Member(self, name, encoded, method, self._offset)
        self._send(header + encoded + zip64)
        self._open = member
        return member

    def add(self, name: str, data: bytes, *, compress: bool = True) -> None:
        """A whole member at once."""
        member = self.open(name, compress=compress)
        member.write(data)
        member.close()

    def _finished(self, member: Member, crc: int, compressed: int, size: int) -> None:
        self._send(struct.pack("<IIQQ", _DESCRIPTOR, crc, compressed, size))
        zip64 = struct.pack("<HHQQQ", 0x0001, 24, size, compressed, member.offset)
        record = struct.pack(
            "<IHHHHHHIIIHHHHHII",
            _CENTRAL,
            (3 << 8) | _VERSION,  # made by: Unix
            _VERSION,
            _FLAGS,
            member.method,
            self._time,
            self._date,
            crc,
            _MAX32,
            _MAX32,
            len(member.encoded),
            len(zip64),
            0,
            0,
            0,
            0o100644 << 16,  # a regular file, rw-r--r--
            _MAX32,
        )
        self._directory.write(record + member.encoded + zip64)
        self._members += 1
        self._open = None

    def close(self) -> None:
        """Write the central directory and the end records; the archive is then complete."""
        for _ in self.closing():
            pass

    def closing(self) -> Iterator[None]:
        """:meth:`close` in steps: a step per mebibyte of the spooled directory, so a caller
        streaming the archive can hand it on as it goes."""
        if self.closed:
            return
        if self._open is not None:
            self._open.close()
        start = self._offset
        self._directory.seek(0)
        while chunk := self._directory.read(1 << 20):
            self._send(chunk)
            yield
        self._directory.close()
        size = self._offset - start
        end64 = self._offset
        self._send(
            struct.pack(
                "<IQHHIIQQQQ",
                _END64,
                44,
                (3 << 8) | _VERSION,
                _VERSION,
                0,
                0,
                self._members,
                self._members,
                size,
                start,
            )
        )
        self._send(struct.pack("<IIQI", _LOCATOR64, 0, end64, 1))
        self._send(struct.pack("<IHHHHIIH", _END, 0, 0, _MAX16, _MAX16, _MAX32, _MAX32, 0))
        self.closed = True

    def abort(self) -> None:
        """Drop the spooled directory without finishing (the archive stays incomplete)."""
        self._directory.close()
        self.closed = True


class Member:
    """One member being written."""

    def __init__(self, archive: ZipStream, name: str, encoded: bytes, method: int, offset: int):
        self.archive = archive
        self.name = name
        self.encoded = encoded
        self.method = method
        self.offset = offset
        self._crc = 0
        self._size = 0
        self._compressed = 0
        self._deflate = (
            zlib.compressobj(_LEVEL, zlib.DEFLATED, -15) if method == _DEFLATED else None
        )

    def write(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        if self._deflate is not None:
            data = self._deflate.compress(data)
        self._compressed += len(data)
        self.archive._send(data)

    def close(self) -> None:
        if self._deflate is not None:
            tail = self._deflate.flush()
            self._compressed += len(tail)
            self.archive._send(tail)
            self._deflate = None
        self.archive._finished(self, self._crc, self._compressed, self._size)
