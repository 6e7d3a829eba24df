"""What one confluent-kafka produce call costs as its producer knows more topics.

    .venv/bin/python benchmarks/bench_produce_topics.py [--topics 1 1000 10000]

No broker: the producer points at a closed port, so records only queue locally, which is all
the produce call does. For each count N it produces once to N topic names (as the match stage
does to alerts.<recipient>), then times 50,000 produces spread over them, and the produce to
the first and to the last topic it used. librdkafka finds a topic by name with a linear scan
of the topics its producer has used, so the cost grows with N (see benchmarks/
profile_match.txt). Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import time

import confluent_kafka
from confluent_kafka import Producer


def per_produce(producer: Producer, names: list[str], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        producer.produce(names[i % len(names)], b"x" * 200, b"k")
    return (time.perf_counter() - started) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, nargs="+", default=[1, 1_000, 10_000])
    args = parser.parse_args()
    print(f"confluent-kafka {confluent_kafka.version()}, librdkafka "
          f"{confluent_kafka.libversion()[0]}")
    for n in args.topics:
        producer = Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0,
                             "queue.buffering.max.messages": 1_000_000})
        names = [f"alerts.r{i:05d}" for i in range(n)]
        for name in names:
            producer.produce(name, b"x")
        spread = per_produce(producer, names, 50_000)
        first = per_produce(producer, names[:1], 5_000)
        last = per_produce(producer, names[-1:], 5_000)
        print(f"{n:>7,} topics: {spread:8,.1f} us per produce spread over them "
              f"(first topic {first:,.1f} us, last {last:,.1f} us)")
        producer.purge()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
