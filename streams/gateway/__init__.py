"""The recipients' HTTP gateway: TAXII 2.1, the feedback API and page, contributions; served
from the Kafka topics themselves (streams/gateway/store.py)."""
