"""TensorBoard event files written directly: TFRecord framing around hand-encoded ``Event`` protobufs.

A trial's results become scalars in ``events.out.tfevents.<time>.<host>`` as Ray Tune's TensorBoard
logger writes them, with no tensorboardX or TensorFlow import: tensorboardX's package imports torch
(its ``writer`` module does), which cost ~2 s of a first 100-trial Tune run on the 2-core VM, and the
two message types needed are small enough to encode here.

The formats, as TensorBoard reads them:

* a TFRecord is ``uint64 length``, ``uint32 masked_crc32c(length bytes)``, the data,
  ``uint32 masked_crc32c(data)``, little-endian; the mask is ``rotate_right(crc, 15) + 0xa282ead8``;
* ``Event``: ``wall_time`` (field 1, double), ``step`` (2, int64), ``file_version`` (3, string),
  ``summary`` (5, message); ``Summary``: repeated ``value`` (1); ``Summary.Value``: ``tag`` (1, string),
  ``simple_value`` (2, float).
"""
import os
import socket
import struct
import time

FILE_VERSION = "brain.Event:2"


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli) of ``data``, as TFRecords use it."""
    table = _CRC32C_TABLE
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data):
    """``data`` framed as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return b"".join((length, struct.pack("<I", masked_crc32c(length)), data, struct.pack("<I", masked_crc32c(data))))


def _varint(value):
    value &= 0xFFFFFFFFFFFFFFFF   # a negative int64 is ten bytes of two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(field, payload):
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def encode_event(wall_time, step=None, file_version=None, scalars=None):
    """One serialized ``Event``: ``scalars`` (tag -> number) become its summary's simple values."""
    parts = [b"\x09", struct.pack("<d", wall_time)]
    if step is not None:
        parts += [b"\x10", _varint(int(step))]
    if file_version is not None:
        parts.append(_length_delimited(3, file_version.encode()))
    if scalars:
        summary = b"".join(
            _length_delimited(1, _length_delimited(1, tag.encode()) + b"\x15" + struct.pack("<f", float(value)))
            for tag, value in scalars.items())
        parts.append(_length_delimited(5, summary))
    return b"".join(parts)


class EventFile:
    """A run's event file in ``directory``, opened with the file-version event TensorBoard expects first."""

    def __init__(self, directory):
        self.path = os.path.join(directory, f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}")
        self._file = open(self.path, "wb")
        self._file.write(tfrecord(encode_event(time.time(), step=0, file_version=FILE_VERSION)))

    def scalars(self, values, step):
        """One event at ``step`` holding every value of ``values`` (tag -> number)."""
        self._file.write(tfrecord(encode_event(time.time(), step=step, scalars=values)))
        self._file.flush()

    def close(self):
        self._file.close()
