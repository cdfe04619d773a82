"""Executable specifications: features/ bound to the step modules of tests/bdd/steps."""

import pytest

# The steps' asserts are the scenarios' verdicts: give them pytest's detailed messages too.
pytest.register_assert_rewrite("tests.bdd.steps", "tests.bdd.support")
