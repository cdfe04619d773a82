"""The work orders: OS specs (markdown with YAML front matter), their criteria and
deliverables, the vault that holds them, and the feature files that prove them."""
