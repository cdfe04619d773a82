"""Step definitions, one module per area; tests/bdd/conftest.py exports them (STEP_MODULES)."""
