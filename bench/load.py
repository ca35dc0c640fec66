"""Load test: N concurrent gradio_client sessions × M questions each against the app served in-process.

    python bench/load.py [--sessions 20] [--turns 5] [--masks] [--memory-mib M] [--timeout 300]
                         [--out bench/results/load.json]
    python bench/load.py --engine vllm [--sessions 20] [--turns 5]    # → bench/results/load-vllm.json

Tiny random checkpoints (built in a temp folder, no download), on 127.0.0.1 only. The model's words are scripted
through `vidchat.testing.scripted` from each session's own visual tokens: session i uploads 4 frames spaced
0.2 + 0.04·i s apart, so the time of its last visual token — which the scripted answer names, and which the
scripted grounding reply puts in the label and time of a box — differs from every other session's by ≥ 0.1 s.
An answer that names another session's time (a cross-session leak: wrong workspace, wrong cached tokens, a
reply routed to the wrong client) counts as mixed up; a turn that does not come back in time counts as lost.

Reports latency percentiles (upload and question, seconds from submit to final result), errors, lost and
mixed-up answers, peak RSS of the process (server and clients together), and checks that every session's temp
folder is its own and is deleted when the session ends. Writes the numbers to --out as JSON.

--engine vllm runs the same sessions twice, side by side in one run, on a model large enough that batching
matters here (Qwen3-VL-2B widths with 2 of its 28 LLM layers and 4 of its 24 vision layers, random weights, every
visual token sent): first answered in process, then by a real `vllm serve` (vLLM's CPU build from .venv-vllm,
`vidchat.testing.vllm_server`) with the app on `--engine vllm`. The words are scripted the same way in both: in
process by `ScriptedLLM(runs_model=True)`, which first runs the real model for as many tokens as the scripted
reply has (a turn costs what a real answer of that length does); in the server by the logits processor of
`vidchat.testing.vllm_script`, which forces the reply's tokens, the session's marker read from the last frame
time in its own prompt. The report adds the server's prefix-cache hit rate (`/metrics`) over the run.

--memory-mib sets the server's memory limit for all sessions (`ServerLimits.memory_bytes`) below what the
sessions need together: the least recently used idle sessions are then closed to make room. A turn refused
because its session was closed that way is counted apart (it is the limit working, not a lost answer), and
the peak of the sessions' measured memory is reported beside the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from vidchat.serving import prefix_cache_counters  # noqa: E402
from vidchat.session import GROUNDING_REQUEST_START, Engine, SessionSettings  # noqa: E402
from vidchat.testing.models import QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION, build_qwen3_vl  # noqa: E402
from vidchat.testing.scripted import Script, scripted_loader  # noqa: E402
from vidchat.testing.videos import write_video  # noqa: E402
from vidchat.testing.vllm_server import VllmServer  # noqa: E402
from vidchat.ui import NO_MASKS, ServerLimits, VidchatApp  # noqa: E402
from vidchat.video import SamplingConfig  # noqa: E402
from vidchat.vlm import VisualTokens  # noqa: E402

QUESTION = "When is the last moment you see?"
BOX_1000 = [100, 200, 400, 500]  # the scripted box, in Qwen3-VL's 0–1000 coordinates


def last_token_time(tokens: VisualTokens) -> float:
    """The session's marker: the time of its last visual token (mean time of the last temporal patch)."""
    return float(np.max(tokens.token_time_s))


SCRIPT = Script(
    answer=lambda tokens: f"The last moment I see is at {last_token_time(tokens):.2f} seconds.",
    grounding=lambda tokens: json.dumps(
        [
            {
                "time": round(last_token_time(tokens), 2),
                "bbox_2d": BOX_1000,
                "label": f"marker {last_token_time(tokens):.2f}",
            }
        ]
    ),
)


# The same words for the vLLM server (`vidchat.testing.vllm_script`: {last_time} is the last frame time of the prompt).
SERVER_RULES = [
    {
        "when": GROUNDING_REQUEST_START,
        "say": json.dumps([{"time": 0.0, "bbox_2d": BOX_1000, "label": "marker {last_time}"}]).replace(
            '"time": 0.0', '"time": {last_time}'
        ),
    },
    {"when": QUESTION, "say": "The last moment I see is at {last_time} seconds."},
]
# The engines' comparison: 2B widths, few layers (random weights); replies long enough for the scripted words.
ENGINE_TEXT = QWEN3_VL_2B_TEXT | dict(num_hidden_layers=2)
ENGINE_VISION = QWEN3_VL_2B_VISION | dict(depth=4, deepstack_visual_indexes=[1, 2, 3])
ENGINE_SETTINGS = SessionSettings(
    sampling=SamplingConfig(fps=2.0, max_frames=8), max_new_tokens=48, max_grounding_tokens=96, selector=None
)


def frame_spacing_s(index: int) -> float:
    return round(0.2 + 0.04 * index, 3)


def expected_marker(sampled_times_s: list[float]) -> float:
    """What the session's answer must name: its last two sampled frames form the last temporal patch."""
    return float(np.mean(sampled_times_s[-2:]))


@dataclass
class SessionResult:
    index: int
    marker_s: float | None = None
    upload_s: float | None = None
    turn_s: list[float] = field(default_factory=list)
    answered: int = 0
    mixed_up: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    session_hash: str = ""
    refused_turns: int = 0  # turns not answered because the server closed this session to make room
    # Kept until the run's checks are done: a Client that is garbage-collected ends its heartbeat, and the
    # server then treats its page as closed.
    client: Client | None = None


def run_session(url: str, index: int, video: str, turns: int, deadline: float, result: SessionResult) -> None:
    try:
        client = result.client = Client(url, verbose=False)
        result.session_hash = client.session_hash
        started = time.monotonic()
        info = client.predict(handle_file(video), 2.0, 8, api_name="/upload")
        result.upload_s = time.monotonic() - started
        result.marker_s = marker = expected_marker(info["sampled_times_s"])
        for turn in range(turns):
            if time.monotonic() > deadline:
                result.errors.append(f"turn {turn}: past the deadline")
                return
            started = time.monotonic()
            job = client.submit(f"{QUESTION} ({turn + 1})", api_name="/ask")
            final = job.result(timeout=max(1.0, deadline - time.monotonic()))
            result.turn_s.append(time.monotonic() - started)
            result.answered += 1
            problem = check_answer(final, marker)
            if problem:
                result.mixed_up.append(f"turn {turn}: {problem}")
    except Exception as error:  # counted and reported: a load test must finish and say what failed
        if ROOM_MESSAGE in str(error) or NO_ROOM_MESSAGE in str(error):
            result.refused_turns = turns - result.answered
        else:
            result.errors.append(f"{type(error).__name__}: {error}"[:300])


DEFAULT_MEMORY = ServerLimits().memory_bytes
# What the server says when it closed a session for room, or has none for a new video (see ServerLimits).
ROOM_MESSAGE = "closed to make room for other visitors"
NO_ROOM_MESSAGE = "The server has no room for this video now"


def check_answer(final: dict, marker: float) -> str:
    """'' when the answer is this session's; else what is wrong with it."""
    text = f"{marker:.2f}"
    if not final.get("done"):
        return "no final answer"
    if text not in final["text"]:
        return f"answer {final['text']!r} does not name this session's {text} s"
    if not any(abs(span["start_s"] - marker) < 0.006 for span in final["times"]):
        return f"answer times {[s['start_s'] for s in final['times']]} miss {text} s"
    labels = [box["label"] for box in final["boxes"]]
    if labels != [f"marker {text}"] or abs(final["boxes"][0]["t_s"] - marker) > 0.006:
        return f"grounding boxes {final['boxes']} are not this session's marker {text}"
    return ""


class Peak:
    """Highest value of `measure()` seen while running (sampled every 50 ms)."""

    def __init__(self, measure: Callable[[], float]):
        self.measure = measure
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.measure())

    def __enter__(self) -> Peak:
        self.peak = self.measure()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.measure())


def current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    array = np.array(values)
    return {
        "n": len(values),
        "p50_s": round(float(np.percentile(array, 50)), 3),
        "p90_s": round(float(np.percentile(array, 90)), 3),
        "p99_s": round(float(np.percentile(array, 99)), 3),
        "max_s": round(float(array.max()), 3),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_load(
    sessions: int = 20,
    turns: int = 5,
    timeout_s: float = 300.0,
    masks: bool = False,
    memory_mib: float | None = None,
    work_dir: str | Path | None = None,
    model_dir: str | Path | None = None,
    sam_dir: str | Path | None = None,
    load=None,
    settings: SessionSettings | None = None,
    turns_at_once: int = 1,
) -> dict:
    """Serve the app, run the sessions, close them, and return the report (see the module docstring)."""
    own_dir = tempfile.TemporaryDirectory(prefix="vidchat-load-") if work_dir is None else None
    work = Path(work_dir or own_dir.name)
    work.mkdir(parents=True, exist_ok=True)
    gradio_cache = os.environ.get("GRADIO_TEMP_DIR")
    try:
        if model_dir is None:
            model_dir = build_qwen3_vl(work / "qwen3_vl")
        if masks and sam_dir is None:
            from vidchat.testing.sam2 import build_sam2_video

            sam_dir = build_sam2_video(work / "sam2")
        videos = []
        for i in range(sessions):
            spacing = frame_spacing_s(i)
            pts = [0.0, spacing, 2 * spacing, 3 * spacing]
            videos.append(write_video(work / f"session{i:02d}.mp4", n_frames=4, pts_s=pts, size=(64, 48)).path)
        settings = settings or SessionSettings(
            sampling=SamplingConfig(fps=2.0, max_frames=8), max_new_tokens=8, max_grounding_tokens=8, selector=None
        )
        # Gradio's cache (uploads, and the sessions' folders inside it) in the bench's own folder, so that what is
        # left there after the sessions close can be checked.
        os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio-cache")
        app = VidchatApp(
            model=str(model_dir),
            sam=str(sam_dir) if masks else NO_MASKS,
            settings=settings,
            load=load or scripted_loader(SCRIPT),
            # A closed tab's session goes a second after its page disconnects (not a minute): the end of the run
            # checks that everything was deleted.
            limits=ServerLimits(
                memory_bytes=int(memory_mib * 2**20) if memory_mib else DEFAULT_MEMORY,
                disconnect_grace_s=1.0,
                turns_at_once=turns_at_once,
            ),
            allow_model_change=False,
        )
        port = free_port()
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            return _drive(app, f"http://127.0.0.1:{port}/", videos, turns, timeout_s, masks)
        finally:
            app.close()
    finally:
        if gradio_cache is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = gradio_cache
        if own_dir is not None:
            own_dir.cleanup()


def _drive(app, url: str, videos: list[str], turns: int, timeout_s: float, masks: bool) -> dict:
    settle_deadline = time.monotonic() + 120
    while not app.models.settled and time.monotonic() < settle_deadline:
        time.sleep(0.05)
    results = [SessionResult(i) for i in range(len(videos))]
    with Peak(current_rss_mib) as rss, Peak(lambda: app.workspaces.memory_bytes / 2**20) as sessions_memory:
        started = time.monotonic()
        deadline = started + timeout_s
        threads = [
            threading.Thread(target=run_session, args=(url, i, video, turns, deadline, results[i]), daemon=True)
            for i, video in enumerate(videos)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 5)
        wall_s = time.monotonic() - started

    # Isolation: one workspace per client, each with its own folder inside the app's root in Gradio's cache.
    workspaces = {r.session_hash: app.workspaces._items.get(r.session_hash) for r in results if r.session_hash}
    folders = [w.folder for w in workspaces.values() if w is not None]
    open_sessions = [r for r in results if not r.refused_turns]  # a session closed for room may have none
    isolated = (
        len(set(folders)) == len(folders)
        and all(workspaces.get(r.session_hash) is not None for r in open_sessions)
        and all(f.resolve().parent == app.workspaces.root.resolve() for f in folders)
    )
    # Every workspace's session holds its own video.
    own_video = all(
        w is not None and w.session is not None and Path(w.session.clip.info.path).name == Path(videos[r.index]).name
        for r in results
        if not r.refused_turns  # a session closed for room comes back empty
        for w in [workspaces.get(r.session_hash)]
    )
    for result in results:  # the tab closes: its heartbeat ends, and Gradio calls the page's unload
        if result.client is not None:
            result.client.close()
        app.on_unload(SimpleNamespace(session_hash=result.session_hash))
    time.sleep(app.workspaces.limits.disconnect_grace_s + 1.0)
    # Nothing a session brought to the server stays: its folder, and the uploads in Gradio's cache.
    left_behind = [path for path in app.inputs.cache_dir.rglob("*") if path.is_file()]
    cleaned = not any(f.exists() for f in folders) and len(app.workspaces) == 0 and not left_behind

    markers = [r.marker_s for r in results if r.marker_s is not None]
    expected_answers = len(videos) * turns
    answered = sum(r.answered for r in results)
    refused = sum(r.refused_turns for r in results)
    report = {
        "sessions": len(videos),
        "turns_per_session": turns,
        "masks": masks,
        "wall_s": round(wall_s, 2),
        "answers_expected": expected_answers,
        "answers_received": answered,
        "refused_for_room": refused,
        "sessions_closed_for_room": sum(r.refused_turns > 0 for r in results),
        "lost": expected_answers - answered - refused,
        "mixed_up": sum(len(r.mixed_up) for r in results),
        "errors": sum(len(r.errors) for r in results),
        "markers_distinct": len(set(round(m, 3) for m in markers)) == len(videos),
        "workspaces_isolated": isolated,
        "sessions_hold_their_own_video": own_video,
        "temp_folders_deleted_on_close": cleaned,
        "files_left_in_gradio_cache": len(left_behind),
        "upload_latency": percentiles([r.upload_s for r in results if r.upload_s is not None]),
        "question_latency": percentiles([t for r in results for t in r.turn_s]),
        "throughput_answers_per_s": round(answered / wall_s, 2) if wall_s else 0.0,
        "peak_rss_mib": round(rss.peak, 1),
        "sessions_memory_limit_mib": round(app.workspaces.limits.memory_bytes / 2**20, 3),
        "sessions_memory_peak_mib": round(sessions_memory.peak, 3),
        "max_rss_mib_whole_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "problems": [f"session {r.index}: {p}" for r in results for p in (*r.errors, *r.mixed_up)][:50],
    }
    return report


def compare_engines(sessions: int, turns: int, timeout_s: float) -> list[dict]:
    """The same sessions in process and through a real vLLM server, one after the other (see the docstring)."""
    with tempfile.TemporaryDirectory(prefix="vidchat-load-engines-") as folder:
        work = Path(folder)
        model = build_qwen3_vl(work / "model", text=ENGINE_TEXT, vision=ENGINE_VISION)
        common = dict(sessions=sessions, turns=turns, timeout_s=timeout_s, model_dir=model, settings=ENGINE_SETTINGS)
        here = run_load(**common, work_dir=work / "transformers", load=scripted_loader(SCRIPT, runs_model=True))
        rows = [engine_row("transformers", here, None)]
        with VllmServer(model, SERVER_RULES, work) as server:
            before = prefix_cache_counters(server.url)
            engine = Engine("vllm", server.url)
            # as app.py sets it for vLLM: every session's turn in flight at once
            there = run_load(**common, work_dir=work / "vllm", load=engine.load, turns_at_once=sessions)
            after = prefix_cache_counters(server.url)
        queries = after["prefix_cache_queries"] - before["prefix_cache_queries"]
        hits = after["prefix_cache_hits"] - before["prefix_cache_hits"]
        rows.append(engine_row("vllm", there, hits / queries if queries else None))
        return rows


def engine_row(engine: str, report: dict, hit_rate: float | None) -> dict:
    latency = report["question_latency"]
    return {
        "engine": engine,
        "answers": report["answers_received"],
        "lost": report["lost"],
        "mixed_up": report["mixed_up"],
        "errors": report["errors"],
        "p50_s": latency.get("p50_s"),
        "p99_s": latency.get("p99_s"),
        "answers_per_min": round(60 * report["throughput_answers_per_s"], 1),
        "prefix_cache_hit_rate": None if hit_rate is None else round(hit_rate, 3),
        "report": report,
    }


def print_table(report: dict) -> None:
    rows = [
        ("sessions × turns", f"{report['sessions']} × {report['turns_per_session']}"),
        ("masks (SAM 2)", "on" if report["masks"] else "off"),
        ("answers received / expected", f"{report['answers_received']} / {report['answers_expected']}"),
        ("lost / mixed up / errors", f"{report['lost']} / {report['mixed_up']} / {report['errors']}"),
        ("markers distinct", report["markers_distinct"]),
        (
            "workspaces isolated / own video",
            f"{report['workspaces_isolated']} / {report['sessions_hold_their_own_video']}",
        ),
        ("folders and uploads deleted on close", report["temp_folders_deleted_on_close"]),
        ("wall time", f"{report['wall_s']} s"),
        ("throughput", f"{report['throughput_answers_per_s']} answers/s"),
    ]
    for name in ("upload_latency", "question_latency"):
        p = report[name]
        if p.get("n"):
            rows.append(
                (
                    name.replace("_", " "),
                    f"p50 {p['p50_s']} s · p90 {p['p90_s']} s · p99 {p['p99_s']} s · max {p['max_s']} s (n={p['n']})",
                )
            )
    rows.append(("peak RSS (server + clients)", f"{report['peak_rss_mib']} MiB"))
    rows.append(
        (
            "sessions' memory: peak / limit",
            f"{report['sessions_memory_peak_mib']} / {report['sessions_memory_limit_mib']} MiB",
        )
    )
    rows.append(
        ("closed for room: sessions / turns", f"{report['sessions_closed_for_room']} / {report['refused_for_room']}")
    )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for problem in report["problems"]:
        print("  !", problem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole run")
    parser.add_argument("--masks", action="store_true", help="track the grounded box with the tiny SAM 2")
    parser.add_argument("--memory-mib", type=float, help="the server's memory limit for all sessions")
    parser.add_argument("--engine", choices=["transformers", "vllm"], default="transformers",
                        help="vllm: the same sessions in process and through vLLM, side by side, at 2B widths")  # fmt: skip
    parser.add_argument("--out", help="default bench/results/load.json, or load-vllm.json with --engine vllm")
    args = parser.parse_args(argv)
    results = Path(__file__).parent / "results"
    if args.engine == "vllm":
        rows = compare_engines(args.sessions, args.turns, args.timeout)
        keys = ["engine", "answers", "lost", "mixed_up", "p50_s", "p99_s", "answers_per_min", "prefix_cache_hit_rate"]
        print("  ".join(f"{key:>20}" for key in keys))
        for row in rows:
            print("  ".join(f"{str(row[key]):>20}" for key in keys))
            for problem in row["report"]["problems"][:5]:
                print("  !", problem)
        here, there = rows
        summary = {
            "sessions": args.sessions,
            "turns": args.turns,
            "model": "Qwen3-VL-2B widths, 2/28 LLM layers, 4/24 vision layers, random weights, selection off",
            "throughput_ratio": round(there["answers_per_min"] / here["answers_per_min"], 2),
            "p99_ratio": round(there["p99_s"] / here["p99_s"], 2) if here["p99_s"] else None,
            "rows": rows,
        }
        print(f"vLLM / in-process: throughput {summary['throughput_ratio']}×, p99 {summary['p99_ratio']}×")
        out = Path(args.out or results / "load-vllm.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        return 0 if all(row["lost"] == row["mixed_up"] == row["errors"] == 0 for row in rows) else 1
    report = run_load(args.sessions, args.turns, args.timeout, args.masks, args.memory_mib)
    print_table(report)
    out = Path(args.out or results / "load.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    ok = report["lost"] == report["mixed_up"] == report["errors"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
