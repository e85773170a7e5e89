"""Builds keras_reg's optional native mask kernels; everything else is in setup.cfg.

The extension (`keras_reg/_backends/_torch_masks.c`) is optional: where it
cannot be compiled (no C compiler), the package installs without it and
PyTorch's fast path for masks uses NumPy and torch kernels instead.
On Linux with GCC it is compiled with OpenMP (`-fopenmp`, GCC's runtime
libgomp, the one PyTorch's Linux wheels use), so that its loops can run on
PyTorch's threads (keras_reg checks at load time that it shares torch's
runtime); with other compilers, on other systems, or where that build fails,
it is compiled single-threaded.
"""

import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, LinkError

OPENMP_FLAGS = ["-fopenmp"]


def _is_gcc(command):
    """Whether the compiler `command` (a list) is GCC, not Clang or Intel's."""
    try:
        macros = subprocess.run(
            [*command, "-dM", "-E", "-x", "c", "/dev/null"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    defined = {line.split()[1] for line in macros.splitlines() if line.count(" ") >= 2}
    return "__GNUC__" in defined and not defined & {"__clang__", "__INTEL_COMPILER"}


class BuildExt(build_ext):
    """`build_ext` that tries OpenMP first with GCC on Linux, else builds serially."""

    def build_extension(self, ext):
        compile_args, link_args = ext.extra_compile_args, ext.extra_link_args
        if (
            sys.platform.startswith("linux")
            and self.compiler.compiler_type == "unix"
            and _is_gcc(self.compiler.compiler_so[:1])
        ):
            ext.extra_compile_args = [*compile_args, *OPENMP_FLAGS]
            ext.extra_link_args = [*link_args, *OPENMP_FLAGS]
            try:
                return super().build_extension(ext)
            except (CCompilerError, CompileError, LinkError):
                print("note: building the native mask kernels without OpenMP")
            finally:
                ext.extra_compile_args, ext.extra_link_args = compile_args, link_args
        return super().build_extension(ext)


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "keras_reg._backends._torch_masks",
            sources=["keras_reg/_backends/_torch_masks.c"],
            optional=True,
        )
    ],
)
