"""The counter-app's web front end: every visit of / increments a counter in Redis.

Redis is the compose service `redis`, reached by its name on the project's
network (counter-net); the first requests retry while Redis is still starting.
"""

import time

import redis
from flask import Flask

app = Flask(__name__)
cache = redis.Redis(host="redis", port=6379)


def hit_count() -> int:
    attempts = 10
    while True:
        try:
            return cache.incr("hits")
        except redis.exceptions.ConnectionError:
            attempts -= 1
            if attempts == 0:
                raise
            time.sleep(0.5)


@app.route("/")
def index() -> str:
    return f"Hello from Dockyard! You have visited me {hit_count()} times.\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
