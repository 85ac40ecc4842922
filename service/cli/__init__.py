"""The `swapyard` command line (`service.cli.main.entry`), one module per command group."""
