"""Bind every scenario of every feature file under features/ (bdd_features_base_dir).

Binding the whole folder means no scenario can exist unbound: a new feature file is collected
as soon as it is written, and a step without a definition fails its scenario.
"""

from pytest_bdd import scenarios

scenarios("")
