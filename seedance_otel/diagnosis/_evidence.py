"""What one ``diagnose()`` call works on: the snapshots and peer records, indexed once.

Rules never scan the whole input per peer: :class:`Evidence` groups the
snapshot indices by peer and by kind in one pass, and computations several
rules share (the idle-timeout analysis, the age clusters, which resets the
handshake explains) are computed once per call through :meth:`Evidence.once`.
That keeps a diagnosis linear in the number of snapshots whatever the number
of peers.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from .._library import Library
from .._snapshot import FaultKind, ResetContextSnapshot
from ..instrumentation.registry import library_named
from ._common import PeerKey, peer_key

__all__ = ["Evidence", "PeerStatsMap", "normalize_peer_stats"]

PeerStatsMap = Mapping[PeerKey, Mapping[str, Any]]

_T = TypeVar("_T")
_NONE: array[int] = array("q")


def normalize_peer_stats(
    peer_stats: Mapping[Any, Mapping[str, Any]] | None,
) -> dict[PeerKey, Mapping[str, Any]]:
    """Keys as ``(host, port)`` with ``""``/``0`` for unknowns, as the registry keys them.

    Accepts ``(host, port)`` tuples (or lists) and ``"host:port"`` strings (what
    a person types, and what JSON can hold); entries that are not
    mappings are skipped rather than failing the whole diagnosis.
    """
    out: dict[PeerKey, Mapping[str, Any]] = {}
    for raw_key, stats in (peer_stats or {}).items():
        if not isinstance(stats, Mapping):
            continue
        host: Any
        port: Any
        if isinstance(raw_key, (tuple, list)) and len(raw_key) == 2:
            host, port = raw_key
        elif isinstance(raw_key, str):
            host, _, port = raw_key.rpartition(":")
            host = host.strip("[]")
        else:
            continue
        try:
            port_number = int(port or 0)
        except (TypeError, ValueError):
            continue
        out[(str(host or ""), port_number)] = stats
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        number = float(value)
        return number if number != float("inf") else None
    return None


class Evidence:
    """The snapshots of one diagnosis, grouped by peer and kind, with shared results.

    ``snapshots`` keeps the input order: a rule names snapshots by their index.
    """

    def __init__(
        self,
        snapshots: Iterable[ResetContextSnapshot],
        peer_stats: Mapping[Any, Mapping[str, Any]] | None = None,
    ) -> None:
        self.snapshots: Sequence[ResetContextSnapshot] = (
            snapshots if isinstance(snapshots, (list, tuple)) else list(snapshots)
        )
        self.peer_stats: PeerStatsMap = normalize_peer_stats(peer_stats)
        # Arrays of machine integers, not lists of int objects: a million
        # indices cost 8 MB, not 36.
        self._by_peer: dict[PeerKey, array[int]] = {}
        self._by_kind: dict[FaultKind, array[int]] = {}
        self._memo: dict[Callable[[Evidence], Any], Any] = {}
        by_peer, by_kind = self._by_peer, self._by_kind
        for index, snap in enumerate(self.snapshots):
            key = (snap.server_address or "", snap.server_port or 0)
            peer = by_peer.get(key)
            if peer is None:
                by_peer[key] = array("q", (index,))
            else:
                peer.append(index)
            kind = by_kind.get(snap.kind)
            if kind is None:
                by_kind[snap.kind] = array("q", (index,))
            else:
                kind.append(index)

    def once(self, compute: Callable[[Evidence], _T]) -> _T:
        """``compute(self)``, computed on first use and remembered for this diagnosis."""
        if compute not in self._memo:
            self._memo[compute] = compute(self)
        result: _T = self._memo[compute]
        return result

    @property
    def peers(self) -> list[PeerKey]:
        """Every peer seen, sorted."""
        return self.once(_sorted_peers)

    def of_peer(self, key: PeerKey) -> Sequence[int]:
        """Indices of the peer's snapshots, in input order."""
        return self._by_peer.get(key, _NONE)

    def of_kind(self, kind: FaultKind) -> Sequence[int]:
        """Indices of the snapshots of one kind, in input order."""
        return self._by_kind.get(kind, _NONE)

    def pick(self, indices: Iterable[int]) -> list[ResetContextSnapshot]:
        """The snapshots at ``indices``, in input order."""
        return [self.snapshots[index] for index in sorted(indices)]

    def reuse_ok_max(self, key: PeerKey) -> float | None:
        """The longest idle after which a reuse to ``key`` worked, from any source."""
        return self.once(_reuse_ok_max_by_peer).get(key)

    @staticmethod
    def library(name: str | None) -> Library | None:
        """What the registry knows about the library a snapshot names."""
        return library_named(name)


def _sorted_peers(evidence: Evidence) -> list[PeerKey]:
    return sorted(evidence._by_peer)


def _reuse_ok_max_by_peer(evidence: Evidence) -> dict[PeerKey, float]:
    """Per peer, the longest successful reuse idle: peer records and snapshots alike."""
    out: dict[PeerKey, float] = {}
    for key, stats in evidence.peer_stats.items():
        value = _number(stats.get("reuse_ok_max_idle_s")) if stats.get("reuse_ok_count") else None
        if value is not None:
            out[key] = max(out.get(key, value), value)
    for snap in evidence.snapshots:
        if snap.peer_reuse_ok_count and snap.peer_reuse_ok_max_idle_s is not None:
            key = peer_key(snap)
            value = snap.peer_reuse_ok_max_idle_s
            if value > out.get(key, -1.0):
                out[key] = value
    return out
