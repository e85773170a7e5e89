"""Builds keras_reg's optional native mask kernels; everything else is in setup.cfg.

The extension is optional: where it cannot be compiled (no C compiler), the
package installs without it and masks are drawn by PyTorch kernels instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "keras_reg.layers._mask_kernels",
            sources=["keras_reg/layers/_mask_kernels.c"],
            optional=True,
        )
    ]
)
