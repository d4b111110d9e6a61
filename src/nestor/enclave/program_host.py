"""The program host: the code that runs *inside* the sandbox (docs/programs.md).

``nestor.enclave.sandbox`` starts it as::

    python -I -B /path/to/nestor/enclave/program_host.py SPEC.json

(by file path, not ``-m``: ``-I`` ignores ``PYTHONPATH``, and this module
imports nothing from ``nestor``, so it runs whether or not the interpreter has
``nestor`` installed). It reads the run specification, loads each input
dataset as a ``pandas.DataFrame``, imports the program's entry point from its
bundle, calls it as ``function(inputs, parameters, context)``, checks what it
returned and writes each output into the output directory: tables as
``NAME.csv``, dicts as ``NAME.json``.

It reports exactly one JSON line (the *report*) on the file descriptor that
was its stdout when it started; while the program runs, fd 1 and
``sys.stdout`` point at stderr, so whatever the program prints cannot be taken
for the report. The report says ``"ok": true`` with the outputs and timings,
or ``"ok": false`` with the stage that failed, a ``kind``, a one-line
``message`` naming the program and what failed, and ``where``, a short
traceback summary (``file:line in function`` of the innermost frames,
bundle-relative) - never a raw traceback alone.

Nothing here is a security boundary: the program runs in this process and
could rewrite any of it. The sandbox around the process is the boundary, and
the enclave re-checks every output file after the process has ended
(``nestor.enclave.sandbox``). This module exists to give honest programs a
clear interface and honest mistakes a clear message.

Exit status: 0 when the report says ok, 2 when it reports a failure.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import math
import os
import re
import resource
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, Any, Final

SPEC_TYPE: Final = "nestor/program-run"
REPORT_TYPE: Final = "nestor/program-report"
VERSION: Final = 1
OUTPUT_NAME: Final = re.compile(r"[a-z0-9_-]{1,64}")
TABLE_FORMATS: Final = ("csv", "parquet", "jsonl", "arrow")
MAX_MESSAGE: Final = 500
EXIT_OK: Final = 0
EXIT_REPORTED_FAILURE: Final = 2


@dataclass(frozen=True)
class ProgramContext:
    """What a program learns about its run besides inputs and parameters.

    ``owners`` maps each input dataset id to its owner's party id; a table
    output with an ``_owner`` column of such ids can be cut per recipient for
    ``view: own``.
    """

    program: str
    min_group_size: int
    owners: Mapping[str, str] = field(default_factory=dict)


class RunError(Exception):
    """A failure to report: ``kind`` is stable, ``message`` is for people."""

    def __init__(
        self,
        stage: str,
        kind: str,
        message: str,
        *,
        where: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.kind = kind
        self.message = message
        self.where = where
        self.hint = hint


# -- the report ------------------------------------------------------------------------


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(tb: TracebackType | None, bundle: Path | None) -> str | None:
    """The innermost frames as ``file:line in function``, bundle files first.

    Bundle files are shown relative to the bundle; other files by name only,
    so the summary carries no paths of the machine and no values."""
    frames = traceback.extract_tb(tb)
    if not frames:
        return None
    shown: list[str] = []
    root = str(bundle.resolve()) + os.sep if bundle is not None else None
    in_bundle = [f for f in frames if root and os.path.abspath(f.filename).startswith(root)]
    for f in (in_bundle or frames)[-3:]:
        name = os.path.abspath(f.filename)
        label = name[len(root) :] if root and name.startswith(root) else os.path.basename(name)
        shown.append(f"{label}:{f.lineno} in {f.name}")
    return " <- ".join(reversed(shown))


# A program signals bad inputs by raising an exception of its own whose class
# has this name (programs need not import Nestor); see docs/programs.md.
INPUT_REJECTION = "InvalidInput"


# Native libraries report the address-space limit in their own words: the
# dynamic loader cannot map a shared object (ImportError), torch's allocator
# or C++ new cannot allocate (RuntimeError). All are the memory limit, not a
# bug in the program.
_OOM_PHRASES: Final = (
    "failed to map segment from shared object",
    "can't allocate memory",
    "std::bad_alloc",
)


def _out_of_address_space(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, ImportError | RuntimeError) and any(p in text for p in _OOM_PHRASES)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return _clip(f"{name}: {text}" if text else name)


def _os_hint(exc: BaseException) -> str | None:
    """What an OSError inside the sandbox most likely means."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno in (
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ECONNREFUSED,
        errno.EADDRNOTAVAIL,
    ):
        return "the sandbox has no network: programs cannot open connections"
    if type(exc).__name__ == "gaierror":
        return "the sandbox has no network: names cannot be resolved"
    if exc.errno == errno.EROFS:
        return (
            "the sandbox's filesystem is read-only: programs may write only to their "
            "output directory (through their return value) and /tmp"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "the sandbox forbids this operation"
    return None


class Reporter:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.started = time.time()
        self.marks: dict[str, float] = {"started": self.started}
        self.usage: dict[str, list[float]] = {"started": _usage()}

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()
        self.usage[name] = _usage()

    def emit(self, body: dict[str, Any]) -> None:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        body = {
            "type": REPORT_TYPE,
            "version": VERSION,
            **body,
            "times": self.marks,
            "usage": self.usage,
            "cpu_s": cpu,
        }
        self.stream.write("\n" + json.dumps(body, sort_keys=True, allow_nan=False) + "\n")
        self.stream.flush()


def _usage() -> list[float]:
    """This process's user and system CPU seconds and minor page faults: the
    enclave reports them per phase (benchmarks tell the program's own
    computation from the kernel's memory work with them)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return [own.ru_utime, own.ru_stime, own.ru_minflt]


# -- loading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    program: str
    bundle: Path
    entry_point: str
    inputs: dict[str, tuple[Path, str, bool]]  # path, format, pending
    parameters: dict[str, Any]
    min_group_size: int
    owners: dict[str, str]
    output_dir: Path
    loaded_fd: int | None = None


def read_spec(path: Path) -> Spec:
    def bad(what: str) -> RunError:
        return RunError("spec", "bad-spec", f"the run specification {path} {what}")

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise bad(f"cannot be read: {_describe(exc)}") from None
    if not isinstance(raw, dict) or raw.get("type") != SPEC_TYPE or raw.get("version") != VERSION:
        raise bad(f"is not a {SPEC_TYPE} version {VERSION} document")
    try:
        inputs = {
            str(ds): (Path(str(item["path"])), str(item["format"]), bool(item.get("pending")))
            for ds, item in dict(raw["inputs"]).items()
        }
        context = dict(raw["context"])
        return Spec(
            program=str(raw["program"]),
            bundle=Path(str(raw["bundle"])),
            entry_point=str(raw["entry_point"]),
            inputs=inputs,
            parameters=dict(raw["parameters"]),
            min_group_size=int(context["min_group_size"]),
            owners={str(k): str(v) for k, v in dict(context["owners"]).items()},
            output_dir=Path(str(raw["output_dir"])),
            loaded_fd=_fd(raw.get("loaded_fd")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"is malformed: {_describe(exc)}") from None


def _fd(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 3:
        raise ValueError(f"loaded_fd must be a file descriptor number above 2, not {value!r}")
    return value


def say_loaded(fd: int | None) -> None:
    """Tell the enclave every input is loaded: it deletes the input files, so
    their plaintext leaves memory before the program computes (the program
    gets tables, never paths). The descriptor is closed either way, so no
    process the program starts inherits it."""
    if fd is None:
        return
    try:
        os.write(fd, b"inputs-loaded\n")  # sandbox.LOADED_MESSAGE
    except OSError:
        pass  # the enclave stopped listening: it deletes the files at the end instead
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def load_inputs(spec: Spec) -> dict[str, Any]:
    if not spec.inputs:
        return {}
    import pandas as pd  # only when there is a table to read: it costs memory

    tables: dict[str, Any] = {}
    for ds, (path, fmt, pending) in spec.inputs.items():
        if pending:
            _wait_for_delivery(ds, path)
        try:
            if fmt == "csv":
                tables[ds] = pd.read_csv(path)
            elif fmt == "parquet":
                tables[ds] = pd.read_parquet(path)
            elif fmt == "jsonl":
                tables[ds] = pd.read_json(path, lines=True)
            elif fmt == "arrow":
                tables[ds] = pd.read_feather(path)
            else:
                raise RunError(
                    "inputs",
                    "bad-input",
                    f"dataset {ds!r} has format {fmt!r}, which cannot be read as a table "
                    f"(table formats: {', '.join(TABLE_FORMATS)})",
                )
        except (RunError, MemoryError):
            raise
        except pd.errors.EmptyDataError:  # not even a header line: a table with no columns
            tables[ds] = pd.DataFrame()
        except Exception as exc:
            raise RunError(
                "inputs",
                "bad-input",
                f"dataset {ds!r} cannot be read as {fmt}: {_describe(exc)}",
            ) from None
    return tables


def _wait_for_delivery(ds: str, path: Path) -> None:
    """Wait until the enclave has renamed the whole verified input into place
    (or marked it failed). The sandbox's time limit bounds the wait."""
    # sandbox.FAILED_SUFFIX: this script imports nothing from nestor.
    failed = path.with_name(path.name + ".failed")
    pause = 0.001
    while not path.exists():
        if failed.exists():
            raise RunError(
                "inputs",
                "input-unavailable",
                f"dataset {ds!r} could not be delivered: the enclave refused its ciphertext",
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def load_entry_point(spec: Spec) -> Callable[..., Any]:
    module_name, sep, function_name = spec.entry_point.partition(":")
    if not sep or not module_name or not function_name:
        raise RunError(
            "import",
            "bad-entry-point",
            f"the program {spec.program!r} cannot be loaded: its entry point "
            f"{spec.entry_point!r} does not look like package.module:function",
        )
    bundle = spec.bundle.resolve()
    # The bundle comes first, as PYTHONPATH would put it: its reviewed modules
    # win over anything installed under the same name.
    sys.path.insert(0, str(bundle))
    try:
        module = importlib.import_module(module_name)
    except MemoryError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise RunError(
                "import",
                "bad-entry-point",
                f"the program {spec.program!r} cannot be loaded: module {module_name!r} of its "
                "entry point is not in the bundle",
                hint="the bundle directory must contain the package, e.g. "
                f"{module_name.replace('.', '/')}.py",
            ) from None
        raise RunError(
            "import",
            "import-error",
            f"the program {spec.program!r} cannot be loaded: {_describe(exc)}",
            where=_where(exc.__traceback__, bundle),
        ) from None
    except BaseException as exc:
        if _out_of_address_space(exc):
            raise MemoryError(str(exc)) from None
        raise RunError(
            "import",
            "import-error",
            f"the program {spec.program!r} cannot be loaded: {_describe(exc)}",
            where=_where(exc.__traceback__, bundle),
        ) from None
    origin = getattr(module, "__file__", None)
    if not origin or not os.path.realpath(origin).startswith(str(bundle) + os.sep):
        raise RunError(
            "import",
            "bad-entry-point",
            f"the program {spec.program!r} cannot be loaded: module {module_name!r} was found "
            "outside the bundle "
            f"({'built in' if not origin else Path(origin).name}); rename the bundle's package",
        )
    function = getattr(module, function_name, None)
    if not callable(function):
        raise RunError(
            "import",
            "bad-entry-point",
            f"the program {spec.program!r} cannot be loaded: module {module_name!r} has no "
            f"function {function_name!r}",
        )
    return function  # type: ignore[no-any-return]


# -- outputs ----------------------------------------------------------------------------------


def _json_value(value: object, path: str, bad: Callable[..., RunError]) -> object:
    """A copy of ``value`` in the canonical-JSON subset, or a clear error."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        value = item()  # numpy scalars → Python scalars
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:
            raise bad(f"holds an integer outside ±(2**53-1) at {path}")
        return int(value)
    if isinstance(value, float):
        shown = "NaN/infinity" if not math.isfinite(value) else "a float"
        raise bad(
            f"holds {shown} at {path}; canonical JSON has no floats",
            hint="put fractional statistics in a table output, or round them to integers "
            "or format them as strings",
        )
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise bad(f"has a non-string key at {path}")
            out[k] = _json_value(v, f"{path}.{k}", bad)
        return out
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{path}[{i}]", bad) for i, v in enumerate(value)]
    raise bad(f"holds a {type(value).__name__} at {path}, which is not JSON")


def _bad_output(program: str, name: str) -> Callable[..., RunError]:
    def bad(what: str, *, hint: str | None = None) -> RunError:
        return RunError(
            "outputs",
            "bad-output",
            f"the program {program!r} returned a bad output {name!r}: it {what}",
            hint=hint,
        )

    return bad


def check_outputs(result: object, program: str) -> dict[str, tuple[str, Any]]:
    """Validate the program's return value: name → ("table" | "json", value)."""
    if not isinstance(result, Mapping):
        raise RunError(
            "outputs",
            "bad-output",
            f"the program {program!r} returned a {type(result).__name__}, not a dict of "
            "name → DataFrame or dict",
        )
    pandas = sys.modules.get("pandas")
    checked: dict[str, tuple[str, Any]] = {}
    for name, value in result.items():
        if not isinstance(name, str) or not OUTPUT_NAME.fullmatch(name):
            raise RunError(
                "outputs",
                "bad-output",
                f"the program {program!r} returned an output named {str(name)[:80]!r}; output "
                "names must match [a-z0-9_-]+ (at most 64 characters)",
            )
        bad = _bad_output(program, name)
        if pandas is not None and isinstance(value, pandas.DataFrame):
            if isinstance(value.columns, pandas.MultiIndex):
                raise bad("has multi-level column names; flatten them before returning it")
            frame = value if isinstance(value.index, pandas.RangeIndex) else value.reset_index()
            columns = [str(c) for c in frame.columns]
            if len(set(columns)) != len(columns):
                raise bad("has two columns with the same name")
            checked[name] = ("table", frame)
        elif pandas is not None and isinstance(value, pandas.Series):
            raise bad("is a Series; return a DataFrame (series.to_frame()) or a dict")
        elif isinstance(value, Mapping):
            checked[name] = ("json", _json_value(value, "$", bad))
        else:
            raise bad(f"is a {type(value).__name__}; outputs must be DataFrames or dicts")
    return checked


def write_outputs(checked: dict[str, tuple[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    written: list[dict[str, Any]] = []
    for name, (kind, value) in sorted(checked.items()):
        if kind == "table":
            path = out_dir / f"{name}.csv"
            value.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
            written.append({"name": name, "file": path.name, "kind": kind, "rows": len(value)})
        else:
            path = out_dir / f"{name}.json"
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            path.write_text(text, encoding="utf-8")
            written.append({"name": name, "file": path.name, "kind": kind})
    return written


# -- main --------------------------------------------------------------------------------------


def _failure(exc: RunError) -> dict[str, Any]:
    return {
        "ok": False,
        "stage": exc.stage,
        "kind": exc.kind,
        "message": _clip(exc.message),
        "where": exc.where,
        "hint": exc.hint,
    }


def run(spec_path: Path, reporter: Reporter) -> int:
    spec: Spec | None = None
    stage = "spec"
    try:
        spec = read_spec(spec_path)
        stage = "inputs"
        inputs = load_inputs(spec)
        reporter.mark("inputs_loaded")
        say_loaded(spec.loaded_fd)
        stage = "import"
        function = load_entry_point(spec)
        context = ProgramContext(
            program=spec.program,
            min_group_size=spec.min_group_size,
            owners=MappingProxyType(dict(spec.owners)),
        )
        stage = "run"
        reporter.mark("program_started")
        try:
            result = function(inputs, dict(spec.parameters), context)
        except (MemoryError, RunError):
            raise
        except BaseException as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
                raise  # the file size limit: reported below
            if _out_of_address_space(exc):
                raise MemoryError(str(exc)) from None
            if type(exc).__name__ == INPUT_REJECTION:
                # The program's own verdict on its inputs: its message is the
                # whole story (dataset, column, rule); no code location.
                raise RunError(
                    "run",
                    "input-rejected",
                    _clip(f"the program {spec.program!r} rejected its inputs: {exc}"),
                ) from None
            raise RunError(
                "run",
                "program-error",
                f"the program {spec.program!r} failed: {_describe(exc)}",
                where=_where(exc.__traceback__, spec.bundle),
                hint=_os_hint(exc),
            ) from None
        reporter.mark("program_finished")
        stage = "outputs"
        checked = check_outputs(result, spec.program)
        written = write_outputs(checked, spec.output_dir)
        reporter.mark("outputs_written")
    except RunError as exc:
        reporter.emit(_failure(exc))
        return EXIT_REPORTED_FAILURE
    except MemoryError as exc:
        label = repr(spec.program) if spec else "?"
        failure = RunError(
            stage,
            "memory-limit",
            f"the program {label} ran out of memory ({stage})",
            where=_where(exc.__traceback__, spec.bundle if spec else None),
        )
        reporter.emit(_failure(failure))
        return EXIT_REPORTED_FAILURE
    except OSError as exc:
        label = repr(spec.program) if spec else "?"
        if exc.errno == errno.EFBIG:
            failure = RunError(
                stage,
                "file-size-limit",
                f"the program {label} wrote a file larger than its limit",
                where=_where(exc.__traceback__, spec.bundle if spec else None),
            )
        else:
            failure = RunError(
                stage,
                "host-error",
                f"the program host could not {stage} for program {label}: {_describe(exc)}",
                hint=_os_hint(exc),
            )
        reporter.emit(_failure(failure))
        return EXIT_REPORTED_FAILURE
    except Exception as exc:  # anything else is a bug in the host or the data
        label = repr(spec.program) if spec else "?"
        failure = RunError(
            stage,
            "host-error",
            f"the program host failed at stage {stage!r} for program {label}: {_describe(exc)}",
            where=_where(exc.__traceback__, None),
        )
        reporter.emit(_failure(failure))
        return EXIT_REPORTED_FAILURE
    reporter.emit({"ok": True, "outputs": written})
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # No bytecode is written (the bundle is read-only here anyway); the enclave
    # refuses bundles that hold any, so none is read in place of the source.
    sys.dont_write_bytecode = True
    # The report goes to the original stdout; everything the program prints
    # goes to stderr.
    report_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reporter = Reporter(os.fdopen(report_fd, "w", encoding="utf-8"))
    if len(args) != 1:
        reporter.emit(_failure(RunError("spec", "bad-spec", "usage: program_host.py SPEC.json")))
        return EXIT_REPORTED_FAILURE
    return run(Path(args[0]), reporter)


if __name__ == "__main__":
    code = main()
    # Skip interpreter teardown (pandas and Arrow take a while to unload): the
    # report and every output file are written and closed by now.
    sys.stderr.flush()
    os._exit(code)
