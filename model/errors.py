"""Errors a user can act on. Each names the file, flag or input at fault and what was expected.

They derive from ValueError so callers that only know the standard library still catch them; the
CLI prints their message on one line and exits non-zero, the nodes show it in ComfyUI.
"""


class HotshotError(ValueError):
    """Base class: a problem with what the user gave us, not a bug."""


class ModelFileError(HotshotError):
    """A weights or config file is missing, unreadable, of the wrong kind, or holds the wrong tensors."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class InputError(HotshotError):
    """A parameter (CLI flag, function argument or node input) is out of range or malformed.

    `name` is the parameter's Python name; a problem that mentions another parameter quotes it in
    backticks (`overwrite=True`, `sdxl`), so the CLI can say each in its own terms (--overwrite).
    """

    def __init__(self, name: str, problem: str):
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")
