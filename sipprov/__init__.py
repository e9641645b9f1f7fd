"""sipprov: provision contact-centre agents into Asterisk 22."""

from pathlib import Path

__version__ = "0.1.0"

# Templates live at the top of the checkout (templates/, dialplan/) so operators can
# read and adapt them next to config.example.toml; the package finds them from here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
