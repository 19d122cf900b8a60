"""A Streamlit session without a browser: what the dashboard server spends on one viewer.

A browser's session is a WebSocket at ``/_stcore/stream`` carrying protobufs: the browser sends
a ``rerun_script`` BackMsg, the server runs the page and streams ForwardMsgs (deltas, then
``script_finished``). A fragment with ``run_every`` sends an ``auto_rerun`` ForwardMsg, and the
browser then asks for that fragment's rerun on that interval. This client does the same and
renders nothing, so `clickguard bench dashboard` can tell the Streamlit server's share of a
viewer's cost from the browser's (its ``session`` condition).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


@dataclass
class SessionStats:
    """What the session received: runs finished, deltas, bytes, and the last error."""

    runs: int = 0
    deltas: int = 0
    bytes: int = 0
    exceptions: int = 0  # st.exception deltas: the page raised
    error: str | None = None
    fragments: dict[str, float] = field(default_factory=dict)  # fragment id -> interval s


def _rerun(page_hash: str, fragment_id: str = "") -> bytes:
    return BackMsg(rerun_script=ClientState(
        page_script_hash=page_hash, fragment_id=fragment_id,
        is_auto_rerun=bool(fragment_id))).SerializeToString()


def hold_session(url: str, stop: threading.Event, stats: SessionStats,
                 timeout_s: float = 30.0) -> None:
    """Open ``url``'s default page as a browser would and keep it refreshing until ``stop``.

    Runs the page once, then reruns each ``run_every`` fragment on its interval, like
    Streamlit's frontend (which waits for a run to finish before the next).
    """
    parts = urlsplit(url)
    ws_url = f"ws://{parts.netloc}{parts.path.rstrip('/')}/_stcore/stream"
    page_hash = ""
    due: dict[str, float] = {}
    running = False
    try:
        with connect(ws_url, subprotocols=["streamlit"],  # type: ignore[list-item]
                     open_timeout=timeout_s, max_size=None) as ws:
            ws.send(_rerun(page_hash))
            running = True
            while not stop.is_set():
                now = time.monotonic()
                if not running and due:
                    fid, at = min(due.items(), key=lambda kv: kv[1])
                    if at <= now:
                        ws.send(_rerun(page_hash, fid))
                        due[fid] = now + stats.fragments[fid]
                        running = True
                        continue
                    wait = min(at - now, 0.5)
                else:
                    wait = 0.5
                try:
                    raw = ws.recv(timeout=wait)
                except TimeoutError:
                    continue
                data = raw if isinstance(raw, bytes) else raw.encode()
                stats.bytes += len(data)
                msg = ForwardMsg()
                msg.ParseFromString(data)
                kind = msg.WhichOneof("type")
                if kind == "navigation":  # st.navigation: the page this session is on
                    page_hash = msg.navigation.page_script_hash
                elif kind == "delta":
                    stats.deltas += 1
                    if msg.delta.new_element.WhichOneof("type") == "exception":
                        stats.exceptions += 1
                elif kind == "auto_rerun":
                    fid = msg.auto_rerun.fragment_id
                    stats.fragments[fid] = msg.auto_rerun.interval
                    due.setdefault(fid, time.monotonic() + msg.auto_rerun.interval)
                elif kind == "script_finished":
                    stats.runs += 1
                    running = False
    except (OSError, ConnectionClosed, TimeoutError) as exc:
        stats.error = f"{type(exc).__name__}: {exc}"
