"""Helpers of the fault-injection, property and security tests (tests/test_faults_*.py,
tests/test_property_*.py, tests/test_security.py): a PostgreSQL the tests may stop and
start, a `sipprov serve` subprocess, hypothesis strategies of hostile text, and the
expected shape of the generated Asterisk files."""
