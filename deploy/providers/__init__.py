"""Providers: where instances and volumes live. `base` is the contract every driver
implements, `types` its states and errors, `registry` finds a driver by name; each driver is
a module or package of its own (`local`) and imports nothing of the engines."""
