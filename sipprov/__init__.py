"""sipprov: provision contact-centre agents into Asterisk 22."""

__version__ = "0.1.0"
