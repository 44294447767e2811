"""Toolchain adapters that turn task source files into WebAssembly modules."""
