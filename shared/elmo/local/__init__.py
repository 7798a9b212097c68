"""The local stack: a real single-node Kafka broker and a real Redis, started on this machine.

Everything they store lives under ``.local/`` at the repository root (see
:mod:`elmo.local.stack_settings`); ``kafka_up``/``redis_up`` and their ``*_down``
counterparts are idempotent, so scripts, tests and CI can call them freely.
"""
