"""Elmo's services: each one is a pure core plus a thin Kafka shell built on `elmo.runtime`."""
