"""Fuzz targets for wsskit's sans-I/O protocol core; see fuzz/README.md."""
