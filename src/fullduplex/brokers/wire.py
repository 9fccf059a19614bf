"""What fullduplex writes in Redis: key and channel names, and the published payload.

Every key of a group shares one hash tag, the group's name in braces, so that the publish
script (offset, history, publish) touches one Redis Cluster slot, and the groups spread over
the slots as their names hash (CRC16 of the name: even over thousands of groups, no
precomputed table needed)::

    fd:{GROUP}:m    hash: "e" epoch, "o" offset of the last publish
    fd:{GROUP}:s    stream: the history, entry ids "OFFSET-0", field "d" = HEAD + DATA
    fd:{GROUP}:c    the pub/sub channel (sharded pub/sub on a cluster)
    fd:{GROUP}:p    sorted set: presence, session id -> expiry (ms)
    fd:{GROUP}:u    hash: presence, session id -> user id
    fd:{GROUP}:i:K  the result of a publish with idempotency key K

A published payload is ``EPOCH:OFFSET:HEAD DATA`` where HEAD is ``FLAGS:NODE:EXCLUDED:`` (the
Lua script prefixes the epoch and offset); FLAGS is ``t`` (text) or ``b`` (binary), NODE the
publishing process's id, EXCLUDED a comma-separated list of that process's session ids. The
ids are hex, the epoch and offset digits and hex: no colon before DATA, which is left as sent.
"""

from __future__ import annotations

from collections.abc import Collection

from .base import Publication

__all__ = [
    "PREFIX",
    "channel",
    "decode_entry",
    "decode_payload",
    "encode_head",
    "group_of_channel",
    "keys",
    "probe_channel",
]

PREFIX = "fd:"
_CHANNEL_SUFFIX = "}:c"


def _tag(group: str) -> str:
    return PREFIX + "{" + group + "}:"


def channel(group: str) -> str:
    """The pub/sub channel of ``group``."""
    return _tag(group) + "c"


def group_of_channel(name: bytes) -> str | None:
    """The group a channel name belongs to, or None for another channel (e.g. a probe)."""
    text = name.decode("utf-8", "surrogateescape")
    if text.startswith(PREFIX + "{") and text.endswith(_CHANNEL_SUFFIX):
        return text[len(PREFIX) + 1 : -len(_CHANNEL_SUFFIX)]
    return None


def probe_channel(node_id: str, tag: str = "") -> str:
    """The channel on which process ``node_id`` probes its own pub/sub connection.

    ``tag`` (a hash tag) places it in the slot of one cluster node.
    """
    return f"{PREFIX}probe:{{{tag}}}:{node_id}" if tag else f"{PREFIX}probe:{node_id}"


def keys(group: str) -> tuple[str, str, str, str]:
    """The meta hash, history stream, presence set and presence users hash of ``group``."""
    tag = _tag(group)
    return tag + "m", tag + "s", tag + "p", tag + "u"


def idempotency_key(group: str, key: str) -> str:
    """Where the result of a publish with idempotency key ``key`` is kept."""
    return _tag(group) + "i:" + key


def encode_head(text: bool, node: str, exclude: Collection[str]) -> bytes:
    """The part of the payload after the epoch and offset, before the data."""
    excluded = ",".join(exclude)
    return f"{'t' if text else 'b'}:{node}:{excluded}:".encode()


def decode_payload(group: str, payload: bytes) -> Publication:
    """The publication in a published payload.

    Raises:
        ValueError: The payload is not one fullduplex wrote.
    """
    epoch, offset, flags, node, excluded, data = payload.split(b":", 5)
    return Publication(
        group,
        epoch.decode(),
        int(offset),
        data,
        flags == b"t",
        node.decode(),
        tuple(excluded.decode().split(",")) if excluded else (),
    )


def decode_entry(group: str, epoch: str, entry_id: bytes, value: bytes) -> Publication:
    """The publication kept in one history entry: id ``OFFSET-0``, field ``d`` = ``value``.

    Raises:
        ValueError: The entry is not one fullduplex wrote.
    """
    offset = int(entry_id.partition(b"-")[0])
    flags, node, excluded, data = value.split(b":", 3)
    return Publication(
        group,
        epoch,
        offset,
        data,
        flags == b"t",
        node.decode(),
        tuple(excluded.decode().split(",")) if excluded else (),
    )
