"""One base exception for Billy; leaf errors also inherit the matching builtin.

Every message is one plain sentence that names the problem and the fix, because it is
what a maker sees on the console of a fish.
"""


class BillyError(Exception):
    """Base of every error Billy raises on purpose."""


class BadSetting(BillyError, ValueError):
    """A value in .env or the environment is not allowed."""


class DeviceError(BillyError, RuntimeError):
    """An audio device or GPIO pin is missing or failed."""


class BackendError(BillyError, RuntimeError):
    """A speech, language or voice backend is missing, dead or answered nonsense."""


class PersonaError(BillyError, ValueError):
    """A persona file cannot be read or written."""


def service_error(what: str, url: str, status: int, body: str) -> BackendError:
    """The one sentence for an OpenAI-compatible service that answered with an HTTP error."""
    if status in (401, 403):
        return BackendError(f"{what} at {url} refused the API key (HTTP {status}): check OPENAI_API_KEY.")
    return BackendError(f"{what} at {url} answered HTTP {status}: {' '.join(body.split())[:200]}")
