"""What one server keeps for all its visitors together."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    """Past a limit the least recently used sessions make room: first their caches go (SAM 2 features and video
    prefix KV, computed again when needed), then the sessions themselves; a session in the middle of a call is never
    touched. When that is not enough the new video is refused."""

    max_sessions: int = 32  # browser tabs (and API clients) with a workspace
    memory_bytes: int = 8 * 1024**3  # frames, visual tokens, SAM 2 features, masks and answers of every session
    disk_bytes: int = 16 * 1024**3  # uploads, playable copies and exports of every session
    idle_timeout_s: float = 2 * 3600  # a session not used this long is closed
    disconnect_grace_s: float = 60  # a session whose page disconnected is closed after this long without a request
    # Questions and clicks of different sessions running at once. In process they wait on the one model lock anyway
    # (1); with an engine that answers elsewhere (vLLM), the answers stream side by side and the server batches them.
    turns_at_once: int = 1
    # Live sources (webcams, stream URLs) playing at once: each holds a model window, its SAM 2 tracking and a
    # recording, and its standing question's checks take the model every few seconds. 0: no live sources.
    live_sources: int = 2

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        if not (self.memory_bytes > 0 and self.disk_bytes > 0 and self.idle_timeout_s > 0):
            raise ValueError("memory_bytes, disk_bytes and idle_timeout_s must be positive")
        if self.turns_at_once < 1:
            raise ValueError(f"turns_at_once must be at least 1, got {self.turns_at_once}")
        if self.live_sources < 0:
            raise ValueError(f"live_sources must not be negative, got {self.live_sources}")
        if self.disconnect_grace_s < 0:
            raise ValueError(f"disconnect_grace_s must not be negative, got {self.disconnect_grace_s}")
