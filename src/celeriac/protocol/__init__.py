"""Celery's message protocol v2: the pure layer every other part builds on.

Nothing here does I/O. ``message`` holds the wire unit and the decoded task message;
``serializers`` and ``compression`` turn values into bodies and back; ``v2`` builds and parses
task messages; ``result_meta`` builds and parses stored result meta (and task exceptions).
"""
