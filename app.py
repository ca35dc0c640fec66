"""vidchat web app entry point. The Gradio UI is not built yet (issue: "The Gradio app"); until then this
says so and points to the command line, which runs the same engine."""

import sys

if __name__ == "__main__":
    print(
        "The vidchat web UI is not built yet. Use the command line, which runs the same engine:\n"
        '  python -m vidchat ask VIDEO "What happens in this video?"',
        file=sys.stderr,
    )
    sys.exit(1)
