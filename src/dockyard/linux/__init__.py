"""Thin wrappers over Linux system calls, one concern per module."""
