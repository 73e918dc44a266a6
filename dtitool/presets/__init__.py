"""Preset study designs shipped with dtitool (TOML files in this folder)."""
