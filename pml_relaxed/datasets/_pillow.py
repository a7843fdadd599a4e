"""Pillow, imported when an image is first read: the image datasets need it, the rest of the library does not."""

from __future__ import annotations

from types import ModuleType


def pillow_image(user: str) -> ModuleType:
    """``PIL.Image``, or an ImportError telling ``user``'s caller what to install.

    Raises:
        ImportError: Pillow is not installed.
    """
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(
            f"{user} reads images with Pillow, which is not installed: pip install pillow "
            "(pml-relaxed[vision] and pml-relaxed[bench] include it)"
        ) from err
    return Image
