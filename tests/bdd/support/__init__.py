"""What the steps and the binding tests build on: databases, catalogs, tags, names, runs."""
