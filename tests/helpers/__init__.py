"""Code several test files share: the CLI in a subprocess, short training runs, tiny text adapters."""
