"""Alert policy: k of the last n windows over threshold open an alert; quiet windows close it.

State is per key. An open event fires on the k-th anomalous window, a close event after
``quiet_windows`` consecutive normal windows; no new alert opens for ``cooldown_s`` of
event time after a close. Severity grows with peak score / threshold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class _Open:
    alert_id: str
    start: float
    end: float
    peak: dict[str, Any]  # the score message of the peak window
    windows: int


@dataclass
class _KeyState:
    recent: deque[bool]
    open: _Open | None = None
    quiet: int = 0
    cooldown_until: float = field(default=float("-inf"))
    last_end: float = field(default=float("-inf"))  # the key's event time, for cooldowns


class AlertPolicy:
    """Turns per-window score messages into alert open/close events."""

    def __init__(
        self,
        k: int = 3,
        n: int = 5,
        quiet_windows: int = 10,
        cooldown_s: float = 0.0,
        severity_ratios: Mapping[str, float] | None = None,
    ) -> None:
        if not 1 <= k <= n:
            raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
        self.k, self.n, self.quiet_windows, self.cooldown_s = k, n, quiet_windows, cooldown_s
        ratios = severity_ratios or {"warning": 1.0, "major": 2.0, "critical": 4.0}
        self._levels = sorted(ratios.items(), key=lambda kv: kv[1])
        self._keys: dict[str, _KeyState] = {}

    @property
    def open_alerts(self) -> dict[str, str]:
        """alert_id of every open alert, by key."""
        return {k: s.open.alert_id for k, s in self._keys.items() if s.open}

    def snapshot(self) -> dict[str, Any]:
        """The state that matters for future events, JSON-ready: keys with an open alert,
        a recent anomalous window or a cooldown still running. Other keys behave exactly
        like unseen ones, so they are also forgotten here (bounding memory and the size of
        the saved state)."""
        out: dict[str, Any] = {}
        for key in list(self._keys):
            st = self._keys[key]
            cooling = st.cooldown_until > st.last_end
            if st.open is None and not any(st.recent) and not cooling:
                del self._keys[key]
                continue
            out[key] = {
                "recent": [int(x) for x in st.recent],
                "quiet": st.quiet,
                "cooldown_until": st.cooldown_until if cooling else None,
                "last_end": st.last_end,
                "open": asdict(st.open) if st.open is not None else None,
            }
        return out

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from a :meth:`snapshot` (after a restart or a rebalance)."""
        for key, s in snapshot.items():
            until = s["cooldown_until"]
            self._keys[key] = _KeyState(
                recent=deque((bool(x) for x in s["recent"]), maxlen=self.n),
                open=_Open(**s["open"]) if s["open"] is not None else None,
                quiet=int(s["quiet"]),
                cooldown_until=float("-inf") if until is None else float(until),
                last_end=float(s["last_end"]),
            )

    def severity(self, ratio: float) -> str:
        name = self._levels[0][0]
        for level, minimum in self._levels:
            if ratio >= minimum:
                name = level
        return name

    def update(self, scores: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
        """Feed score messages (per-key time order); return (index of window, event) pairs."""
        events: list[tuple[int, dict[str, Any]]] = []
        for i, s in enumerate(scores):
            key = s["key"]
            st = self._keys.get(key)
            if st is None:
                st = self._keys[key] = _KeyState(recent=deque(maxlen=self.n))
            hot = bool(s["is_anomaly"])
            st.last_end = s["window_end"]
            st.recent.append(hot)
            if st.open is not None:
                if hot:
                    st.quiet = 0
                    st.open.end = s["window_end"]
                    st.open.windows += 1
                    if s["score"] > st.open.peak["score"]:
                        st.open.peak = s
                else:
                    st.quiet += 1
                    if st.quiet >= self.quiet_windows:
                        events.append((i, self._event("close", key, st.open)))
                        st.open = None
                        st.recent.clear()
                        st.cooldown_until = s["window_end"] + self.cooldown_s
            elif hot and sum(st.recent) >= self.k and s["window_end"] >= st.cooldown_until:
                st.open = _Open(
                    f"{key}@{s['window_end']:.3f}", s["window_end"], s["window_end"], s, sum(st.recent)
                )
                st.quiet = 0
                events.append((i, self._event("open", key, st.open)))
        return events

    def _event(self, kind: str, key: str, alert: _Open) -> dict[str, Any]:
        peak = alert.peak
        return {
            "event": kind,
            "alert_id": alert.alert_id,
            "key": key,
            "start": alert.start,
            "end": alert.end if kind == "close" else None,
            "peak_score": peak["score"],
            "threshold": peak["threshold"],
            "severity": self.severity(peak["score"] / peak["threshold"]),
            "top_features": peak["top_features"],
            "windows": alert.windows,
            "model_version": peak["model_version"],
        }
