"""Elmo's in-repo library: event contracts, the service runtime and the tools every service shares."""

__version__ = "0.1.0"
