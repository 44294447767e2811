"""Task modules: the registry, its caches, and the contract a module must meet."""
