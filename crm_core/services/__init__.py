"""What the routes do, independent of HTTP: ingest, contacts, deals, keys, privacy."""
