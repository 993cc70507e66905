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
