"""Builds keras_reg's optional native mask kernels; everything else is in setup.cfg.

The extension is optional: where it cannot be compiled (no C compiler), the
package installs without it and masks are drawn by PyTorch kernels instead.
On Linux it is compiled with OpenMP where the compiler supports it, so that
its loops run on PyTorch's threads (PyTorch's Linux wheels ship the same
OpenMP runtime, libgomp); elsewhere, or where that build fails, it is
compiled single-threaded.
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, LinkError

OPENMP_FLAGS = ["-fopenmp"]


class BuildExt(build_ext):
    """`build_ext` that tries OpenMP first and falls back to a serial build."""

    def build_extension(self, ext):
        if sys.platform.startswith("linux") and self.compiler.compiler_type == "unix":
            ext.extra_compile_args = [*ext.extra_compile_args, *OPENMP_FLAGS]
            ext.extra_link_args = [*ext.extra_link_args, *OPENMP_FLAGS]
            try:
                return super().build_extension(ext)
            except (CCompilerError, CompileError, LinkError):
                print("note: building the native mask kernels without OpenMP")
                for flag in OPENMP_FLAGS:
                    ext.extra_compile_args.remove(flag)
                    ext.extra_link_args.remove(flag)
        return super().build_extension(ext)


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "keras_reg.layers._mask_kernels",
            sources=["keras_reg/layers/_mask_kernels.c"],
            optional=True,
        )
    ],
)
