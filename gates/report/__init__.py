"""The auditors' static site of the vault and the ledger."""
