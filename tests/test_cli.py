"""The command line, run as a user runs it: a separate `python -m vidchat` process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vidchat.testing.speech import CUES, write_subtitled_video
from vidchat.testing.videos import write_text_file, write_video

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env_extra=None, timeout=240):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "vidchat", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("cli") / "shapes.mp4", n_frames=30, fps=10.0, size=(160, 120))


def test_ask_streams_answers_and_writes_json(tiny_model_dirs, video, tmp_path):
    out = tmp_path / "answers.json"
    result = run_cli("ask", video.path, "What moves?", "What does it do next?", "--model",
                     tiny_model_dirs["qwen3_vl"], "--max-new-tokens", "6", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "> What moves?" in result.stdout and "> What does it do next?" in result.stdout
    saved = json.loads(out.read_text())
    assert [turn["question"] for turn in saved["turns"]] == ["What moves?", "What does it do next?"]
    assert saved["video"]["width"] == 160 and saved["video"]["height"] == 120
    assert saved["sampled_times_s"] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    for turn in saved["turns"]:
        assert turn["text"] in result.stdout
        assert {"times", "points", "boxes", "object_ids", "selection"} <= set(turn)
        assert turn["selection"]["on"] and 0 < turn["selection"]["kept"] < turn["selection"]["total"]


def test_the_selector_is_chosen_on_the_command_line(tiny_model_dirs, video, tmp_path):
    out = tmp_path / "answers.json"
    result = run_cli("ask", video.path, "What moves?", "--model", tiny_model_dirs["qwen3_vl"], "--max-new-tokens", "2",
                     "--selector", "none", "--json", out)
    assert result.returncode == 0, result.stderr
    (turn,) = json.loads(out.read_text())["turns"]
    assert not turn["selection"]["on"] and turn["selection"]["kept"] == turn["selection"]["total"]

    missing = run_cli("ask", video.path, "What moves?", "--model", tiny_model_dirs["qwen2_5_vl"],
                      "--selector", "qtsplus", "--qtsplus", "AlpachinoNLP/QTSplus-3B",
                      env_extra={"VIDCHAT_WEIGHTS": str(tmp_path / "weights"), "HF_HOME": str(tmp_path / "hf")})
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "python -m vidchat download AlpachinoNLP/QTSplus-3B" in missing.stderr
    alone = run_cli("ask", video.path, "What moves?", "--selector", "qtsplus")
    assert alone.returncode == 2 and "--selector qtsplus and --qtsplus ID_OR_FOLDER go together" in alone.stderr


def test_missing_weights_offline_say_what_to_run(video, tmp_path):
    result = run_cli("ask", video.path, "What moves?", "--model", "Qwen/Qwen3-VL-2B-Instruct",
                     env_extra={"VIDCHAT_WEIGHTS": str(tmp_path / "weights"), "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2
    assert "python -m vidchat download Qwen/Qwen3-VL-2B-Instruct" in result.stderr
    assert str(tmp_path / "weights" / "Qwen--Qwen3-VL-2B-Instruct") in result.stderr
    assert "Traceback" not in result.stderr


def test_download_offline_fails_with_a_message(tmp_path):
    result = run_cli("download", "facebook/sam2.1-hiera-tiny",
                     env_extra={"VIDCHAT_WEIGHTS": str(tmp_path / "weights"), "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2
    assert "Could not download 'facebook/sam2.1-hiera-tiny'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_video_is_one_clear_error(tiny_model_dirs, tmp_path):
    result = run_cli("ask", write_text_file(tmp_path / "notes.mp4"), "What moves?", "--model",
                     tiny_model_dirs["qwen2_5_vl"])
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_the_vllm_engine_needs_its_server(video):
    alone = run_cli("ask", video.path, "What moves?", "--engine", "vllm")
    assert alone.returncode == 2 and "the vllm engine needs the server's address (--engine-url" in alone.stderr
    down = run_cli("ask", video.path, "What moves?", "--engine", "vllm", "--engine-url", "http://127.0.0.1:9")
    assert down.returncode == 2 and "Traceback" not in down.stderr
    assert "The vLLM server at http://127.0.0.1:9 is not answering" in down.stderr


def test_transcribe_reads_a_subtitle_track_and_ask_carries_the_transcript(tiny_model_dirs, tmp_path):
    subtitled = write_subtitled_video(tmp_path / "talk.mp4", tracks=[("mov_text", "eng")])
    out = tmp_path / "transcript.json"
    result = run_cli("transcribe", subtitled, "--asr", "none", "--json", out)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    assert saved["source"] == "subtitles" and saved["language"] == "eng"
    assert [(s["start_s"], s["end_s"], s["text"]) for s in saved["segments"]] == [
        (pytest.approx(cue.start_s, abs=1e-3), pytest.approx(cue.end_s, abs=1e-3), cue.text) for cue in CUES
    ]
    assert all(segment["words"] == [] for segment in saved["segments"])  # subtitles have no word times
    assert "Transcript: 4 lines, from the subtitle track, language eng." in result.stderr
    assert "00:02.0 – 00:03.2  First line / Second line" in result.stdout
    assert "红色方块 & more" in result.stdout

    answers = tmp_path / "answers.json"
    asked = run_cli("ask", subtitled, "What is said?", "--model", tiny_model_dirs["qwen3_vl"], "--max-new-tokens", "2",
                    "--json", answers, env_extra={"VIDCHAT_WEIGHTS": str(tmp_path / "weights"), "HF_HOME": str(tmp_path / "hf")})
    assert asked.returncode == 0, asked.stderr
    # the default recognizer is not on this machine: said once, and the subtitles are read all the same
    assert "Speech recognition is off" in asked.stderr and "python -m vidchat download openai/whisper" in asked.stderr
    document = json.loads(answers.read_text())
    assert document["transcript"]["segments"] == saved["segments"]
    assert document["turns"][0]["transcript_lines"] == 4

    missing = run_cli("transcribe", subtitled, "--asr", "openai/whisper-tiny",
                      env_extra={"VIDCHAT_WEIGHTS": str(tmp_path / "weights"), "HF_HOME": str(tmp_path / "hf")})
    assert missing.returncode == 2 and "python -m vidchat download openai/whisper-tiny" in missing.stderr


def test_ask_says_where_it_looked_closer_and_zoom_is_chosen_on_the_command_line(tmp_path):
    from tests.helpers import build_needle_model
    from vidchat.session import SamplingConfig
    from vidchat.testing.needle import NEEDLE_QUESTION, write_needle_video

    needle = write_needle_video(tmp_path / "haystack.mp4", seconds=120, fps=4, needle_s=70.0, size=(192, 144))
    model = build_needle_model(tmp_path / "rigged", needle, SamplingConfig(fps=2, max_frames=64))
    ask = ("ask", needle.path, NEEDLE_QUESTION, "--model", model, "--fps", "2", "--max-frames", "64",
           "--max-new-tokens", "2", "--no-grounding", "--asr", "none")  # fmt: skip
    out = tmp_path / "answers.json"
    result = run_cli(*ask, "--zoom-windows", "1", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "\nLooked closer at 01:09.4–01:14.9 (4.0 fps, 22 frames)\n" in result.stdout
    (turn,) = json.loads(out.read_text())["turns"]
    assert turn["zoom"] == [{"start_s": 69.375, "end_s": 74.875, "fps": 4.0, "frames": 22}]

    result = run_cli(*ask, "--no-zoom", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "Looked closer" not in result.stdout and json.loads(out.read_text())["turns"][0]["zoom"] == []
    too_many = run_cli(*ask, "--zoom-windows", "4")
    assert too_many.returncode == 2 and "--zoom-windows: invalid choice: 4" in too_many.stderr
