"""Certify: run the gates on a clean checkout of a commit (their results kept as evidence of
its git tree), measure what the scenarios are worth (mutation testing), and decide each
criterion and OS."""
