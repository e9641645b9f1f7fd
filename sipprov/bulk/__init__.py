"""CSV import and export of agents."""
