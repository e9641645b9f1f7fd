"""The `sipprov` command line."""
