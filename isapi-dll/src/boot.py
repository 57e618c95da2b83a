"""pyisapie's start-up helpers, run inside the embedded interpreter.

Kept as Python because these steps are Python's own business (the import system, site
directories, tracebacks); the Rust side calls the functions below.
"""

import os
import sys


def setup_paths(python_path, virtualenv, site_dirs=(), venv_python=None, found=False):
    """Put `python_path` in front of sys.path and activate `virtualenv`.

    `site_dirs` are the site-packages folders the virtualenv may have for this Python, and
    `venv_python` its interpreter, as the Rust side computes them (`paths.rs`:
    `Lib\\site-packages` and `Scripts\\python.exe` on Windows, `lib/pythonX.Y/site-packages`
    and `bin/python` on Unix).

    A `found` virtualenv (not configured) that does not fit this interpreter is skipped:
    the reason is returned for the log. Otherwise returns None.

    The virtualenv is activated the way `activate_this.py` does it: its site-packages (with
    their .pth files) go before the system ones, and sys.prefix points at it. This works
    whatever executable the server process is, which PyConfig's venv detection does not.
    sys.executable becomes the virtualenv's Python, so that multiprocessing and
    subprocess calls of `sys.executable` start Python, not the server (w3wp.exe).
    """
    if virtualenv:
        import site

        venv = os.path.abspath(virtualenv)
        if not os.path.isdir(venv):
            if found:
                sys.path[:0] = [os.path.abspath(p) for p in python_path]
                return f"virtualenv {venv} does not exist (skipped)"
            raise RuntimeError(f"virtualenv {venv} does not exist")
        found_dirs = []
        for path in map(os.path.abspath, site_dirs):
            if os.path.isdir(path) and os.path.realpath(path) not in map(os.path.realpath, found_dirs):
                found_dirs.append(path)
        if not found_dirs:
            import glob

            others = sorted(
                glob.glob(os.path.join(venv, "lib*", "python*")) + glob.glob(os.path.join(venv, "Lib", "site-packages"))
            )
            message = (
                f"virtualenv {venv} has no site-packages for Python {sys.version_info[0]}.{sys.version_info[1]}"
                f" (looked for {list(site_dirs)}; found: {others or 'nothing'}); create it with the Python"
                f" pyisapie is built against: {sys.version.split()[0]}"
            )
            if found:
                sys.path[:0] = [os.path.abspath(p) for p in python_path]
                return message + " (skipped)"
            raise RuntimeError(message)
        before = list(sys.path)
        for path in found_dirs:
            site.addsitedir(path)
        added = [p for p in sys.path if p not in before]
        sys.path[:] = added + before
        sys.prefix = sys.exec_prefix = venv
        if venv_python and os.path.isfile(venv_python):
            sys.executable = os.path.abspath(venv_python)
    sys.path[:0] = [os.path.abspath(p) for p in python_path]
    return None


def load_app(module, attr):
    """Import `module` and return its (dotted) attribute `attr`, which must be callable."""
    import importlib

    obj = importlib.import_module(module)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"module {module!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise TypeError(f"{module}:{attr} is not callable (it is {type(obj).__name__})")
    return obj


def format_exception(exc, tb=None):
    """The traceback of `exc` as text."""
    import traceback

    tb = tb or exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()


def regular_file(filelike):
    """(handle, offset, size) when `filelike` is a real, regular file; else None.

    `handle` is what TRANSMIT_FILE takes: the descriptor on POSIX, the OS HANDLE on
    Windows, looked up with `msvcrt.get_osfhandle` in Python's own C runtime (pyisapie is
    linked to another one, whose descriptor table knows nothing of Python's files).
    """
    import stat

    try:
        fd = filelike.fileno()
        if not isinstance(fd, int) or fd < 0:
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if os.name == "nt":
            import msvcrt

            handle = msvcrt.get_osfhandle(fd)
        else:
            handle = fd
        if hasattr(filelike, "flush"):
            filelike.flush()
        offset = filelike.tell() if hasattr(filelike, "tell") else 0
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return handle, offset, st.st_size
