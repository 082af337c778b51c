"""Groups of the `callmood` command that grew past a few lines each (plugin/cli.py adds
them): one module per group, e.g. `callmood calls ...`, `callmood import ...`."""
