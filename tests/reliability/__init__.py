"""Reliability suite: fuzzed inputs, bounded memory at scale, fork, signals, server floods."""
