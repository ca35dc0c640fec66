"""Errors a user can cause. Each carries a message a person understands; the UI shows it, the CLI prints it."""


class VidchatError(Exception):
    """Base of every error that comes from user input or a missing resource, never from a bug."""


class VideoError(VidchatError):
    """The uploaded file cannot be used as a video."""


class NotAVideoError(VideoError):
    """The file is not a video at all (text, image, audio only, empty file)."""


class EmptyVideoError(VideoError):
    """The file is a video container but holds no decodable frame."""


class CorruptVideoError(VideoError):
    """The video stream is truncated or damaged so that frames cannot be read."""


class UnsupportedCodecError(VideoError):
    """The video uses a codec this build cannot decode."""


class VideoTooLongError(VideoError):
    """The video is longer than the configured duration limit."""


class VideoTooLargeError(VideoError):
    """The file or its frames are larger than the configured limits (bytes, resolution, frame count)."""


class ModelError(VidchatError):
    """A model cannot be loaded or used."""


class ModelNotFoundError(ModelError):
    """The weights of a model are not on this machine and cannot be downloaded."""


class EngineError(VidchatError):
    """The server that answers questions (a vLLM server) is down, refused a request or failed mid-answer."""


class PromptError(VidchatError):
    """A click or prompt that does not fall on the video (outside the frame or its duration)."""


class ServerBusyError(VidchatError):
    """The server holds as many sessions, or bytes of memory or disk, as its limits allow, all of them in use."""


class ClosedError(VidchatError):
    """The session was closed while work for it was under way (another video was opened): the work stops."""


class UrlRefusedError(VidchatError):
    """A URL the server does not fetch for a visitor: another scheme, or a host that leads to a private, loopback or
    reserved address (`vidchat.url_guard`)."""


class FetchError(VidchatError):
    """A video file could not be fetched from its URL: the server did not answer, refused, or broke off."""


class StreamEndedError(VidchatError):
    """A live stream could not be opened, ended, broke off or stopped sending pictures (`vidchat.live`)."""
