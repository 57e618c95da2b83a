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


def import_module(module):
    """Import the app's module (the Rust side names the app in the error)."""
    import importlib

    return importlib.import_module(module)


def lookup(obj, module, attr):
    """The (dotted) attribute `attr` of the module `obj`."""
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"module {module!r} has no attribute {attr!r}") from None
    return obj


def factory_arguments(text):
    """The positional and keyword arguments written in `text` (`'prod', debug=False`).

    Only Python literals are accepted (strings, numbers, True/False/None, tuples, lists,
    dicts, sets), as gunicorn does: `ast.literal_eval`, never `eval`.
    """
    import ast

    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot parse the factory's arguments ({text})") from None
    if not isinstance(call, ast.Call) or any(k.arg is None for k in call.keywords):
        raise ValueError(f"the factory's arguments ({text}) must be literals, with no * or **")
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except ValueError:
        raise ValueError(
            f"the factory's arguments ({text}) must be Python literals"
            " (strings, numbers, True, False, None, tuples, lists, dicts)"
        ) from None
    return args, kwargs


def _machinery(frame):
    """A frame of pyisapie's start-up or of the import system, not the user's."""
    name = frame.filename
    return (
        name == "<pyisapie boot>"
        or name.startswith("<frozen importlib")
        or name.endswith(os.path.join("importlib", "__init__.py"))
    )


def describe_exception(exc, tb=None):
    """(the exception's own lines, the traceback or None).

    The traceback leaves out pyisapie's and the import system's frames (as Python's own
    import errors do); when no frame of the user's is left, and nothing is chained, it is
    None: the exception's lines say it all (`No module named 'myapp'`).
    """
    import traceback

    if tb is not None:
        exc = exc.with_traceback(tb)
    te = traceback.TracebackException.from_exception(exc)
    seen = set()
    todo = [te]
    while todo:
        t = todo.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list([f for f in t.stack if not _machinery(f)])
        todo += [c for c in (t.__cause__, t.__context__) if c is not None]
    only = "".join(te.format_exception_only()).rstrip()
    chained = te.__cause__ is not None or (te.__context__ is not None and not te.__suppress_context__)
    if not te.stack and not chained:
        return only, None
    return only, "".join(te.format()).rstrip()


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


def refusing_module(exc):
    """The module an ImportError in `exc` (or what caused it) says cannot load in a
    sub-interpreter, else None.

    CPython's words (3.12+): "module _ctypes does not support loading in subinterpreters";
    PyO3's: "PyO3 modules do not yet support subinterpreters" (the name is then unknown).
    On 3.12 `_datetime` refuses silently (datetime falls back to Python) and the failure
    shows later, as zoneinfo's AttributeError about `datetime_CAPI`.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ImportError):
            text = str(exc)
            lowered = text.lower()
            if "subinterpreter" in lowered or "sub-interpreter" in lowered:
                if exc.name:
                    return exc.name
                words = text.split()
                if len(words) > 1 and words[0] == "module":
                    return words[1]
                return f"named in: {text}"
        if isinstance(exc, AttributeError) and "datetime_CAPI" in str(exc):
            # 3.12: _datetime refuses, datetime falls back to pure Python, and _zoneinfo
            # (zoneinfo, which Django imports) then finds no C API.
            return "_datetime (which zoneinfo needs)"
        exc = exc.__cause__ or exc.__context__
    return None
