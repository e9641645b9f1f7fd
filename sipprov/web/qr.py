"""QR codes as inline SVG (the `qrcode` package's SVG path image: no Pillow, no
external request), for the softphone provisioning link."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg


def svg(data: str) -> str:
    """An SVG document of `data` as a QR code (error correction M)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2, box_size=10)
    code.add_data(data)
    code.make(fit=True)
    image = code.make_image(image_factory=qrcode.image.svg.SvgPathImage)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue().decode("utf-8")


def data_uri(data: str) -> str:
    """The QR code as a data: URI for an <img> (the CSP allows img-src data:)."""
    import base64

    return "data:image/svg+xml;base64," + base64.b64encode(svg(data).encode("utf-8")).decode("ascii")
