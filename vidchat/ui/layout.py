"""The page's layout and its events: player with overlay canvas and timeline, the live sources (a webcam, a stream
URL: live view, status, standing question, Stop), chat, objects, settings, and the hidden components of the API
endpoints `/upload`, `/open_url`, `/ask`, `/point`, `/transcript`, `/export` and `/live_start`, `/live_frame`,
`/live_watch`, `/live_status`, `/live_stop` (for gradio_client).

Turns (questions, clicks) run `ServerLimits.turns_at_once` at a time (concurrency_id "gpu"), and every call of
this process's models takes the model lock: one at a time in process, side by side where vLLM answers. Uploads are
decoded `DECODE_CONCURRENCY` at a time beside them; the status timer and exports run beside too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from vidchat.session import (
    ASR_CHOICES,
    MODEL_CHOICES,
    NO_ASR,
    QTSPLUS_CHECKPOINTS,
    SAM2_CHECKPOINTS,
    SELECTORS,
    VIDEO_EXTENSIONS,
)
from vidchat.ui import live as live_views
from vidchat.ui import views
from vidchat.ui.gpu import DECODE_CONCURRENCY
from vidchat.ui.live import LIVE_FPS, MAX_WINDOW_S, MIN_WINDOW_S, SOURCES, VIDEO_FILE, webcam_id
from vidchat.ui.models import NO_MASKS, NO_QTSPLUS, ModelSlot

if TYPE_CHECKING:
    from vidchat.ui.app import VidchatApp

# Filled by the page's script (vidchat/ui/static/timeline.js) from the overlay data.
TIMELINE_PLACEHOLDER = (
    '<div class="vc-timeline-empty">Answers\' times, objects and what the model looked at appear here.</div>'
)
# The closer look's windows per question: a vLLM server started as the README says takes 4 videos per prompt, the
# coarse pass and 3 windows.
MAX_ZOOM_WINDOWS = 3
# The closer look's resolution choices: the most pixels of each dense frame (multiples of the 28×28 merged patch).
ZOOM_PIXELS = [
    ("≈ 320×320 (128·28²)", 128 * 28 * 28),
    ("≈ 448×448 (256·28²)", 256 * 28 * 28),
    ("≈ 634×634 (512·28²)", 512 * 28 * 28),
]
# The live view's refresh period (seconds): the newest picture, the status line and alerts.
LIVE_TICK_S = 0.5
# Filled by the page's script (vidchat/ui/static/transcript.js) from the transcript data.
TRANSCRIPT_PLACEHOLDER = (
    '<div class="vc-tr-empty">The video\'s words appear here once a video is open: its subtitles, or the speech '
    "recognized in it.</div>"
)


def build(app: VidchatApp) -> gr.Blocks:
    """The page and the API endpoints, wired to `app`'s handlers."""
    defaults = app.settings
    models = app.models
    budget_default = 100 if defaults.selector is None else round(defaults.selector.max_fraction * 100)
    with gr.Blocks(title="vidchat", delete_cache=(3600, 24 * 3600)) as demo:
        with gr.Row(elem_id="vc-header"):
            gr.HTML(
                '<div class="vc-brand"><span class="vc-logo">▶</span><div><h1>vidchat</h1>'
                "<p>Ask about a video. Times are links, objects get masks.</p></div></div>",
                elem_id="vc-brand",
            )
            # What the chat is about: a video file (the player), or a live source (the live section under it). In the
            # header, where it takes no height from the page under it.
            source = gr.Radio(
                choices=list(SOURCES),
                value=VIDEO_FILE,
                label="What to chat about",
                show_label=False,
                container=False,
                elem_id="live-source",
            )
            status = gr.HTML(views.status_html(models), elem_id="status")
        with gr.Row(equal_height=False, elem_id="vc-main"):
            with gr.Column(scale=6, min_width=360):
                player = gr.Video(
                    label="Video",
                    show_label=False,
                    sources=["upload"],
                    elem_id="player",
                    height=None,  # as tall as its video (vidchat.css caps it)
                    include_audio=True,
                    buttons=[],
                )
                live = _live_section(app)
                gr.HTML(TIMELINE_PLACEHOLDER, elem_id="timeline")
                notice = gr.HTML(views.notice("Upload a video or pick an example."), elem_id="notice")
                gr.HTML(TRANSCRIPT_PLACEHOLDER, elem_id="transcript")
                objects = gr.HTML(views.objects_html(None), elem_id="objects")
                with gr.Row(elem_id="vc-export-row"):
                    export = gr.Button(
                        "Export annotated video + JSON", elem_id="export-btn", size="sm", variant="secondary"
                    )
                    burn = gr.Checkbox(
                        value=False, label="Burn the captions into the exported video", elem_id="burn-captions"
                    )
                downloads = gr.File(
                    label="Downloads", file_count="multiple", interactive=False, elem_id="downloads", visible=False
                )
            with gr.Column(scale=5, min_width=360):
                chat = gr.Chatbot(
                    elem_id="chat",
                    height=470,
                    show_label=False,
                    layout="bubble",
                    latex_delimiters=[],
                    buttons=["copy"],
                    feedback_options=None,
                    group_consecutive_messages=False,
                    placeholder="Upload a video, then ask about it. Times in answers are links to that moment.",
                )
                with gr.Row(elem_id="vc-ask-row"):
                    question = gr.Textbox(
                        label="Question",
                        placeholder="Ask about the video…  (Enter to send)",
                        show_label=False,
                        elem_id="question",
                        scale=8,
                        lines=1,
                        max_lines=4,
                        max_length=defaults.max_question_chars,
                        submit_btn=False,
                    )
                    send = gr.Button("Ask", variant="primary", elem_id="ask-btn", scale=1, min_width=80)
                if app.examples:
                    examples = gr.Examples(
                        examples=[[video, q] for video, q in app.examples],
                        inputs=[player, question],
                        label="Examples: a clip and a question to ask",
                        examples_per_page=6,
                        elem_id="examples",
                    )
                    # Gradio's copies of the examples, which the examples table gives to every visitor: never
                    # deleted with a session (the same call Gradio makes when it processes the examples).
                    app.inputs.keep = {
                        Path(player.move_resource_to_block_cache(video)).resolve() for video, _ in app.examples
                    }
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    with gr.Row():
                        model = _model_choice(
                            app, models.llm_slot, MODEL_CHOICES, "Video model (Hugging Face id or local folder)"
                        )
                        sam = _model_choice(
                            app, models.sam_slot, (*SAM2_CHECKPOINTS, NO_MASKS), "Mask model (SAM 2 size, or none)"
                        )
                    with gr.Row():
                        qtsplus = _model_choice(
                            app,
                            models.qtsplus_slot,
                            (*QTSPLUS_CHECKPOINTS, NO_QTSPLUS),
                            "QTSplus selector checkpoint (for the qtsplus selector, or none)",
                        )
                        asr = _model_choice(
                            app,
                            models.asr_slot,
                            (*ASR_CHOICES, NO_ASR),
                            "Speech recognizer (Whisper) for videos without subtitles, or none",
                        )
                    load = gr.Button(
                        "Load these models (for everyone on this server)",
                        size="sm",
                        visible=app.allow_model_change,
                    )
                    with gr.Row():
                        fps = gr.Slider(
                            0.25, 8, value=defaults.sampling.fps, step=0.25, label="Sampling (frames per second)"
                        )
                        max_frames = gr.Slider(4, 768, value=defaults.sampling.max_frames, step=4, label="Max frames")
                    selector = gr.Dropdown(
                        choices=list(SELECTORS),
                        value=app.default_selector,
                        label="Visual-token selector: the model's attention, the trained QTSplus, evenly "
                        "spread, or none (every token)",
                    )
                    budget = gr.Slider(
                        2,
                        100,
                        value=budget_default,
                        step=1,
                        label="Visual-token budget: most % of the video's tokens each question keeps (100 = all)",
                    )
                    with gr.Row():
                        tracks = gr.Dropdown(
                            choices=[],
                            value=None,
                            interactive=False,
                            label="Subtitle track the transcript reads (when the video has several)",
                            info="Open a video to see its subtitle tracks.",
                            elem_id="subtitle-track",
                        )
                        words_budget = gr.Slider(
                            0,
                            8192,
                            value=defaults.transcript_tokens,
                            step=128,
                            label="Transcript budget: most tokens of the video's words each question reads (0 = none)",
                            elem_id="transcript-budget",
                        )
                    with gr.Row():
                        zoom_on = gr.Checkbox(
                            value=defaults.zoom.on,
                            label="Look closer: in a long video, each question looks densely at the parts it needs",
                            elem_id="zoom-on",
                        )
                        zoom_windows = gr.Slider(
                            1,
                            MAX_ZOOM_WINDOWS,
                            value=defaults.zoom.windows,
                            step=1,
                            label="Closer look: parts per question, at most",
                            elem_id="zoom-windows",
                        )
                    with gr.Row():
                        zoom_fps = gr.Slider(
                            1,
                            8,
                            value=defaults.zoom.fps,
                            step=0.5,
                            label="Closer look: frames per second, at least",
                            elem_id="zoom-fps",
                        )
                        zoom_pixels = gr.Dropdown(
                            choices=ZOOM_PIXELS,
                            value=defaults.zoom.max_pixels,
                            label="Closer look: resolution of each frame, at most",
                            elem_id="zoom-pixels",
                        )
                    gr.Markdown(
                        "Sampling applies to the next video you open; the selector, the budgets and the closer look "
                        "to the next question; a subtitle track at once.",
                        elem_classes="vc-small",
                    )
        # Read by the page's script: the overlay data, the masks it asked for, the video's words, and the tab's token
        # that a reload shows to get its session back.
        overlay = gr.JSON(visible=False, elem_id="overlay-data")
        words = gr.JSON(visible=False, elem_id="transcript-data")
        # Every second while the tab's transcript is made (started when a video opens), until the page has it.
        words_timer = gr.Timer(1.0, active=False)
        masks_out = gr.JSON(visible=False, elem_id="masks-data")
        token = gr.Textbox(visible="hidden", elem_id="tab-token")
        timer = gr.Timer(1.0)

        view = [chat, objects, overlay]
        private = {"api_visibility": "private"}
        on_gpu = {"concurrency_id": "gpu", "concurrency_limit": app.workspaces.limits.turns_at_once}
        # Uploads are decoded several at a time, beside a running turn; their encoding takes the model lock.
        on_decode = {"concurrency_id": "decode", "concurrency_limit": DECODE_CONCURRENCY}
        # Live frames are short (a resize, an encode, SAM 2 on one frame): one live source's at a time each.
        on_frames = {"concurrency_id": "live-frames", "concurrency_limit": max(1, app.workspaces.limits.live_sources)}
        video_event = dict(
            fn=app.on_video,
            inputs=[player, fps, max_frames],
            outputs=[player, *view, notice, downloads, token, words, tracks, words_timer],
            show_progress_on=[notice],
            **on_decode,
            **private,
        )
        player.upload(**video_event)
        player.clear(**video_event)
        if app.examples:
            examples.load_input_event.then(**video_event)
        ask_event = dict(
            fn=app.on_ask,
            inputs=[question, selector, budget, words_budget, zoom_on, zoom_windows, zoom_fps, zoom_pixels],
            outputs=[question, *view],
            show_progress="minimal",
            show_progress_on=[notice],
            **on_gpu,
            **private,
        )
        question.submit(**ask_event)
        send.click(**ask_event)
        # The click on the paused video, the files the page did not upload, the masks near the playhead: calls the
        # page's script makes (`_page_call`).
        point = {"show_progress_on": [notice], **on_gpu, **private}
        _page_call("point", app.on_point, [question, *view], "pendingPoint", **point)
        # The files the player takes (vidchat/ui/static/upload.js); it reports the others here, for the app's reason.
        upload_rules = json.dumps({"extensions": VIDEO_EXTENSIONS, "max_bytes": defaults.limits.max_bytes})
        demo.load(None, js=f"() => {{ window.vidchat && window.vidchat.setUploadRules({upload_rules}); }}")
        quick = {"queue": False, "show_progress": "hidden", **private}
        _page_call("refused-file", app.on_refused_file, [notice], "upload.refused", **quick)
        overlay.change(None, inputs=[overlay], js="(data) => { window.vidchat && window.vidchat.setOverlay(data); }")
        # Masks near the playhead: read beside a running turn, without the queue.
        _page_call("masks", app.on_masks, [masks_out], "pendingMasks", **quick)
        masks_out.change(None, inputs=[masks_out], js="(data) => { window.vidchat && window.vidchat.addMasks(data); }")
        chat.clear(app.on_clear, outputs=view, **on_gpu, **private)
        # A reload of the tab shows its token (kept in the tab's sessionStorage) and gets its session back.
        demo.load(
            app.on_load,
            inputs=[token],
            outputs=[player, *view, notice, downloads, token, words, tracks, words_timer, source],
            js="() => sessionStorage.getItem('vidchat-tab') || ''",
            show_progress_on=[notice],
            **private,
        )
        token.change(None, inputs=[token], js="(t) => { if (t) sessionStorage.setItem('vidchat-tab', t); }")
        words.change(None, inputs=[words], js="(data) => { window.vidchat && window.vidchat.setTranscript(data); }")
        words_timer.tick(
            app.on_transcript, outputs=[words, tracks, words_timer], queue=False, show_progress="hidden", **private
        )
        tracks.input(app.on_subtitle_track, inputs=[tracks], outputs=[words, words_timer], **private)
        export.click(
            app.on_export,
            inputs=[burn],
            outputs=[downloads],
            show_progress_on=[downloads],
            concurrency_limit=2,
            **private,
        )
        _wire_live(app, live, source, player, question, view, notice, downloads, token, words, tracks, words_timer,
                   [fps, max_frames], on_gpu, on_decode, on_frames)  # fmt: skip
        timer.tick(app.on_status, outputs=[status, timer], queue=False, show_progress="hidden", **private)
        load.click(app.on_models, inputs=[model, sam, qtsplus, asr], outputs=[status, timer], **private)
        demo.unload(app.on_unload)

        # The API for gradio_client: the same operations on hidden components, returning plain JSON.
        with gr.Group(visible=False):
            api_video = gr.Video(sources=["upload"], include_audio=True)
            api_fps = gr.Number(value=defaults.sampling.fps, label="fps")
            api_max_frames = gr.Number(value=defaults.sampling.max_frames, label="max_frames")
            api_url = gr.Textbox(label="url")
            api_question = gr.Textbox(label="question")
            api_t = gr.Number(label="t_s")
            api_x = gr.Number(label="x")
            api_y = gr.Number(label="y")
            api_burn = gr.Checkbox(value=False, label="burn_captions")
            api_window = gr.Number(value=app.live_settings.recording.window_s, label="window_s")
            api_frame = gr.Image(type="numpy", sources=["upload"], label="image")
            api_text = gr.Textbox(label="text")
            api_result = gr.JSON()
            api_files = gr.File(file_count="multiple")
            api_button = gr.Button()
        api_button.click(
            app.api_upload, [api_video, api_fps, api_max_frames], api_result, api_name="upload", **on_decode
        )
        api_button.click(
            app.api_open_url, [api_url, api_fps, api_max_frames], api_result, api_name="open_url", **on_decode
        )
        api_button.click(app.api_ask, [api_question], api_result, api_name="ask", **on_gpu)
        api_button.click(app.api_point, [api_t, api_x, api_y], api_result, api_name="point", **on_gpu)
        api_button.click(app.api_transcript, None, api_result, api_name="transcript", concurrency_limit=None)
        api_button.click(app.api_export, [api_burn], api_files, api_name="export", concurrency_limit=2)
        api_button.click(
            app.api_live_start, [api_url, api_fps, api_window], api_result, api_name="live_start", **on_decode
        )
        api_button.click(app.api_live_frame, [api_frame, api_t], api_result, api_name="live_frame", **on_frames)
        api_button.click(app.api_live_watch, [api_text], api_result, api_name="live_watch", concurrency_limit=None)
        api_button.click(app.api_live_status, None, api_result, api_name="live_status", concurrency_limit=None)
        api_button.click(app.api_live_stop, None, api_result, api_name="live_stop", **on_decode)
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


@dataclass(frozen=True)
class LiveSection:
    """The live sources' part of the page (`_live_section`)."""

    panel: gr.Column  # shown when the source chosen is the webcam or a stream URL
    camera: gr.Column
    webcams: list[gr.Image]  # one per rate of LIVE_FPS (a stream's period is fixed when the page is built)
    url_row: gr.Row
    url: gr.Textbox
    watch_url: gr.Button
    view: gr.Image
    status: gr.HTML
    condition: gr.Textbox
    set_condition: gr.Button
    clear_condition: gr.Button
    stop: gr.Button
    fps: gr.Slider
    window: gr.Slider
    timer: gr.Timer


def _live_section(app: VidchatApp) -> LiveSection:
    """Under the player: the webcam (its frames start a live source) or a stream URL's box, the live view (the
    newest frame with the tracked objects' masks; a click points at one), its status line, the standing question
    ("tell me when…"), the rate and window of the next start, and Stop."""
    recording = app.live_settings.recording
    default_fps = min(LIVE_FPS, key=lambda fps: abs(fps - recording.fps))
    with gr.Column(visible=False, elem_id="live") as panel:
        with gr.Row(visible=False, equal_height=True, elem_id="live-url-row") as url_row:
            url = gr.Textbox(
                label="Stream URL (HLS, RTMP or RTSP)",
                placeholder="https://…/live.m3u8, rtmp://…, rtsp://…  (Enter to watch)",
                lines=1,
                max_lines=1,
                scale=5,
                elem_id="live-url",
            )
            watch_url = gr.Button("Watch", variant="primary", scale=1, min_width=90, elem_id="live-url-btn")
        with gr.Row(equal_height=False, elem_id="live-row"):
            with gr.Column(visible=False, scale=2, min_width=200, elem_id="live-camera") as camera:
                webcams = [
                    gr.Image(
                        label=f"Your webcam ({fps} frame{'s' if fps > 1 else ''} a second)",
                        sources=["webcam"],
                        streaming=True,
                        type="numpy",
                        webcam_options=gr.WebcamOptions(mirror=False),
                        visible=fps == default_fps,
                        height=240,
                        elem_id=webcam_id(fps),
                        elem_classes="vc-webcam",
                    )
                    for fps in LIVE_FPS
                ]
            with gr.Column(scale=3, min_width=240, elem_classes="vc-live-only"):
                view = gr.Image(
                    label="Live view: click to point at something",
                    interactive=False,
                    buttons=[],
                    placeholder="The newest picture appears here once the live source plays.",
                    elem_id="live-view",
                )
        status = gr.HTML(live_views.status_html(None), elem_id="live-status")
        # Shown while a live source plays (live.css: the status line says so).
        with gr.Row(equal_height=True, elem_id="live-when-row", elem_classes="vc-live-only"):
            condition = gr.Textbox(
                label="Tell me when…",
                placeholder="a person enters  (Enter to set)",
                lines=1,
                max_lines=1,
                scale=4,
                min_width=150,
                elem_id="live-when",
            )
            set_condition = gr.Button("Set", scale=1, min_width=60, elem_id="live-when-btn")
            clear_condition = gr.Button("Clear", variant="secondary", scale=1, min_width=60, elem_id="live-when-clear")
        with gr.Row(elem_id="live-settings"):
            fps = gr.Slider(
                LIVE_FPS[0],
                LIVE_FPS[-1],
                value=default_fps,
                step=1,
                label="Frames per second kept (from the next start)",
                elem_id="live-fps",
            )
            window = gr.Slider(
                MIN_WINDOW_S,
                MAX_WINDOW_S,
                value=recording.window_s,
                step=1,
                label="Seconds each question sees (from the next start)",
                elem_id="live-window",
            )
        stop = gr.Button(
            "Stop, and open the recording as a video", variant="stop", elem_id="live-stop", elem_classes="vc-live-only"
        )
    timer = gr.Timer(LIVE_TICK_S, active=False)
    return LiveSection(
        panel, camera, webcams, url_row, url, watch_url, view, status, condition, set_condition, clear_condition,
        stop, fps, window, timer,
    )  # fmt: skip


def _wire_live(
    app: VidchatApp,
    live: LiveSection,
    source: gr.Radio,
    player: gr.Video,
    question: gr.Textbox,
    view: list,
    notice: gr.HTML,
    downloads: gr.File,
    token: gr.Textbox,
    words: gr.JSON,
    tracks: gr.Dropdown,
    words_timer: gr.Timer,
    sampling: list,
    on_gpu: dict,
    on_decode: dict,
    on_frames: dict,
) -> None:
    """The live section's events (`VidchatApp.on_live_*`, `on_webcam_frame`)."""
    private = {"api_visibility": "private"}
    quick = {"queue": False, "show_progress": "hidden", **private}
    source.change(
        app.on_live_source,
        inputs=[source, live.fps],
        outputs=[player, live.panel, live.camera, live.url_row, *live.webcams, live.timer],
        **quick,
    )
    live.fps.input(app.on_live_fps, inputs=[source, live.fps], outputs=live.webcams, **quick)
    for fps, webcam in zip(LIVE_FPS, live.webcams):
        webcam.stream(
            app.on_webcam_frame,
            inputs=[webcam, live.fps, live.window, *sampling],
            outputs=[live.timer, notice],
            stream_every=1 / fps,
            show_progress="hidden",
            **on_frames,
            **private,
        )
    url_event = dict(
        fn=app.on_live_url,
        inputs=[live.url, live.fps, live.window, *sampling],
        outputs=[notice, live.timer, live.status],
        show_progress_on=[notice],
        **on_decode,
        **private,
    )
    live.url.submit(**url_event)
    live.watch_url.click(**url_event)
    page = [player, *view, notice, downloads]
    live.timer.tick(
        app.on_live_tick,
        outputs=[live.view, live.status, live.timer, source, *page, token, words, tracks, words_timer],
        **quick,
    )
    # A click on the live view: the page's script (static/live.js) says where.
    _page_call("live-point", app.on_live_point, [question, *view], "pendingLivePoint", show_progress_on=[live.status],
               **on_gpu, **private)  # fmt: skip
    live.condition.submit(app.on_live_watch, inputs=[live.condition], outputs=[live.status], **quick)
    live.set_condition.click(app.on_live_watch, inputs=[live.condition], outputs=[live.status], **quick)
    live.clear_condition.click(app.on_live_unwatch, outputs=[live.status, live.condition], **quick)
    live.stop.click(
        app.on_live_stop,
        outputs=[*page, token, words, tracks, words_timer, source, live.timer, live.view, live.status],
        show_progress_on=[notice],
        **on_decode,
        **private,
    )


def _page_call(name: str, fn, outputs: list, source: str, **wiring) -> None:
    """A call the page's script makes: it leaves a value in `window.vidchat.SOURCE` and clicks the hidden button
    #NAME-btn; `fn` gets the value (through the hidden textbox #NAME-input)."""
    value = gr.Textbox(visible="hidden", elem_id=f"{name}-input")
    button = gr.Button(name, visible="hidden", elem_id=f"{name}-btn")
    js = f"(value) => (window.vidchat && window.vidchat.{source}) || value"
    button.click(fn, inputs=[value], outputs=outputs, js=js, **wiring)


def _model_choice(app: VidchatApp, slot: ModelSlot, choices: Sequence[str], label: str) -> gr.Dropdown:
    """A model setting: the current model first, then the known ones; any id or folder can be typed."""
    return gr.Dropdown(
        choices=list(dict.fromkeys([slot.model_id, *choices])),
        value=slot.model_id,
        allow_custom_value=True,
        interactive=app.allow_model_change,
        label=label,
    )
