"""The user record: its rules, validation, naming, passwords and extension numbers."""
