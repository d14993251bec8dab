"""cros_venv: build Python virtual environments offline from checked-in wheels."""

__version__ = "0.1.0"
