"""Build the compiled core.

Environment switches (read here and, for the first, by qbreaker._impl.select too):

- QBREAKER_NO_EXTENSIONS=1: build pure Python. Without it a failed compile
  fails the install: a build meant to be compiled never ships pure Python.
- QBREAKER_DEBUG_BUILD=1: -O0 -g, line tracing, annotated HTML.
- QBREAKER_SANITIZE=thread|address|undefined: build with that sanitizer.
- QBREAKER_CFLAGS: extra compiler flags, appended last.
"""

import glob
import os
import platform
import shlex
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Beside the compiled core, what built it: python -m qbreaker info prints it.
BUILD_RECORD = "_build.json"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = _env_flag("QBREAKER_NO_EXTENSIONS") or (
    platform.python_implementation() != "CPython"
)
DEBUG = _env_flag("QBREAKER_DEBUG_BUILD")
SANITIZE = os.environ.get("QBREAKER_SANITIZE", "")


def _extensions() -> list:
    from Cython.Build import cythonize

    directives = {}
    compile_args, link_args, macros = [], [], []
    if sys.platform != "win32":
        compile_args += ["-Wall", "-Wno-unused-function", "-std=c11"]
        # -g0 last wins over the -g in Python's own CFLAGS: a release build
        # carries no debug information (the core would weigh 2 MB instead of
        # 0.3 MB). QBREAKER_DEBUG_BUILD keeps it; a sanitizer adds -g back.
        compile_args += ["-O0", "-g3"] if DEBUG else ["-O2", "-g0"]
        if SANITIZE:
            flags = [f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer", "-g"]
            compile_args += flags
            link_args += flags
    if DEBUG:
        directives.update(linetrace=True)
        macros += [("CYTHON_TRACE_NOGIL", "1")]
    compile_args += shlex.split(os.environ.get("QBREAKER_CFLAGS", ""))
    ext = Extension(
        "qbreaker._core_c",
        ["src/qbreaker/_core_c.pyx"],
        include_dirs=["src/qbreaker"],
        # The .pxi files are the core's own source, by concern (_native/):
        # a change to one rebuilds it.
        depends=["src/qbreaker/qb_atomic.h", "src/qbreaker/qb_cell.h",
                 "src/qbreaker/qb_clock.h", "src/qbreaker/_core_c.pxd",
                 *sorted(glob.glob("src/qbreaker/_native/*.pxi"))],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=macros,
    )
    # The benchmark baselines (python -m qbreaker bench): about 70 kB, in
    # every wheel so the benchmark runs where a wheel was installed, without
    # a compiler (docs/development.md, "Wheels"). Same
    # flags as the core, so neither is faster for reasons of optimisation
    # level; it cimports the core's .pxd, hence the same include paths.
    floor = Extension(
        "qbreaker._cli.bench._floor",
        ["src/qbreaker/_cli/bench/_floor.pyx"],
        include_dirs=["src/qbreaker"],
        depends=["src/qbreaker/_core_c.pxd", "src/qbreaker/qb_cell.h"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=macros,
    )
    return cythonize(
        [ext, floor],
        compiler_directives=directives,
        include_path=["src"],
        annotate=DEBUG,
        # The pyx declares its own directives; keep the build reproducible.
        force=DEBUG or bool(SANITIZE),
    )


class RecordingBuildExt(build_ext):
    """build_ext that also writes BUILD_RECORD beside the compiled core: the
    Cython version, the compiler command and the flags the core got."""

    def run(self) -> None:
        super().run()
        import json

        import Cython

        core = next(e for e in self.extensions if e.name == "qbreaker._core_c")
        compiler = getattr(self.compiler, "compiler_so", None) or [
            self.compiler.compiler_type
        ]
        record = {
            "cython": Cython.__version__,
            "compiler": list(compiler),
            "extra_compile_args": list(core.extra_compile_args),
            "define_macros": [list(m) for m in core.define_macros],
            "debug_build": DEBUG,
            "sanitize": SANITIZE or None,
        }
        where = os.path.dirname(self.get_ext_fullpath(core.name))
        os.makedirs(where, exist_ok=True)
        with open(os.path.join(where, BUILD_RECORD), "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
            f.write("\n")


if NO_EXTENSIONS:
    print("*" * 60 + "\n* qbreaker: pure-Python build (QBREAKER_NO_EXTENSIONS)\n" + "*" * 60)
    setup(ext_modules=[])
else:
    setup(ext_modules=_extensions(), cmdclass={"build_ext": RecordingBuildExt})
