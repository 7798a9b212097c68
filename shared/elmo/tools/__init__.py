"""Operator tools built on kafka-python: topic administration, fixture replay, tailing, supervision."""
