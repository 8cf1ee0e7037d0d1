"""The official CloudEvents SDK for Python on tidings' wire format (the JSON event format).

    read   reads one event from standard input, as a consumer in another language would, and
           prints its attributes and data as JSON
    write  builds one event with the SDK, as a publisher in another language would, and prints
           it in the JSON event format
"""

import json
import sys
import uuid
from datetime import datetime, timezone

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent


def read() -> None:
    event = JSONFormat().read(None, sys.stdin.buffer.read())
    attributes = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in event.get_attributes().items()
    }
    print(json.dumps({"attributes": attributes, "data": event.get_data()}))


def write() -> None:
    event = CloudEvent(
        {
            "id": str(uuid.uuid4()),
            "source": "https://erp.example/prices",
            "type": sys.argv[2],
            "time": datetime.now(timezone.utc),
            "datacontenttype": "application/json",
            "dataversion": 1,
            "partitionkey": "p-9",
        },
        {"product_id": "p-9", "price_cents": 4200},
    )
    sys.stdout.buffer.write(JSONFormat().write(event))


if __name__ == "__main__":
    {"read": read, "write": write}[sys.argv[1]]()
