"""vidchat: grounded chat about a video."""
