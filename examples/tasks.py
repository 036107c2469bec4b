"""The first-steps example: an app and one task, on the embedded SQLite default."""

from celeriac import Celery

app = Celery("tasks")


@app.task
def add(x: int, y: int) -> int:
    return x + y
