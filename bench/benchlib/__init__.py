"""Shared pieces of `make bench`: statistics and result files, the stack, the cases."""
