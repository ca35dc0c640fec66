"""The web app: Gradio Blocks over `vidchat.session`, one file per job.

- `app`: `VidchatApp`, the handlers of the page's events and of the API (`/upload`, `/open_url`, `/ask`, `/point`,
  `/transcript`, `/export`; a live source's `/live_start`, `/live_frame`, `/live_watch`, `/live_status`, `/live_stop`);
- `layout`: the page's components and how their events are wired;
- `views`: what the page shows (chat, objects, overlay and timeline data, status), made from the session;
- `live`: what the page shows of a live source while it plays (live view, status line, its conversation), made from
  the `vidchat.livechat.LiveChat`;
- `transcript`: the video's words as the page shows them (panel, captions, speech lane) and as `/transcript` gives them;
- `models`: the models, each loaded once per process in the background, and their state;
- `workspaces`: one per browser tab, within the server's `limits`;
- `gpu`: the model calls, one at a time, inside `spaces.GPU` on ZeroGPU;
- `theme` and `static/`: the look, and the page's script and style.

Nothing here imports the pipeline stages: everything comes from `vidchat.session` and `vidchat.livechat`.
"""

from vidchat.ui.app import VidchatApp
from vidchat.ui.limits import ServerLimits
from vidchat.ui.models import NO_MASKS
from vidchat.ui.views import POINT_QUESTION

__all__ = ["NO_MASKS", "POINT_QUESTION", "ServerLimits", "VidchatApp"]
