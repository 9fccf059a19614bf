"""Tests of the benchmark: its servers, runner and load generator."""
