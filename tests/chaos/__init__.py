"""A chaos (Jepsen-style) suite: producers and consumers of one group under a nemesis.

Separate processes publish numbered events and handle them in one consumer
group (``tidings run`` of :mod:`.consumer`) while a seeded nemesis kills
(SIGKILL), pauses past the session timeout (SIGSTOP, then SIGCONT: a zombie
that wakes up) and gracefully stops (SIGTERM) them, restarting the dead.
Then producers stop, the group drains, and :mod:`.checker` verifies the
history: no acknowledged event lost, no duplicate effect under exactly-once,
per-key order of first deliveries, final lag 0.

``python -m tests.chaos --help`` (``make chaos``) runs it against any broker
URL; ``test_chaos.py`` is the short run of the test suite.
"""
