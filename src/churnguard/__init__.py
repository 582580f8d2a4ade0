"""churnguard: catch container and cloud-instance evasion without paging for benign churn."""

__version__ = "0.1.0"


def compiled_modules() -> list[str]:
    """churnguard's imported modules that run compiled: the optional Cython build
    (``CHURNGUARD_COMPILE=1``, setup.py). The service logs them at start and exports their
    count, so an operator can tell which build a pod runs."""
    import sys
    from importlib.machinery import EXTENSION_SUFFIXES

    suffixes = tuple(EXTENSION_SUFFIXES)
    modules = list(sys.modules.items())
    return sorted(
        name
        for name, module in modules
        if name.startswith("churnguard") and str(getattr(module, "__file__", "")).endswith(suffixes)
    )
