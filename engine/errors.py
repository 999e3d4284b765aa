"""The error types users see. The CLI prints their message (no traceback) and exits with 2."""


class VlauditError(Exception):
    """Base class: a problem the user can fix, explained in the message."""


class InputError(VlauditError, ValueError):
    """Bad input data or arguments: a wrong label, a missing column, an empty source."""


class ModelMismatchError(VlauditError):
    """An index is used with a different model than the one that built it."""


class MissingWeightsError(VlauditError):
    """Model weights are neither cached nor reachable."""


class MissingDependencyError(VlauditError, ImportError):
    """An optional package is needed for the requested feature."""


def require(module: str, feature: str, extra: str | None = None):
    """Import an optional module or raise a MissingDependencyError naming the package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install 'vlaudit[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependencyError(f"{feature} needs the package '{module}': {hint}") from exc
