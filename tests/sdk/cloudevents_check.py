"""The official CloudEvents SDK for Python on tidings' wire formats: the JSON event format
(structured mode), the RabbitMQ binding's binary mode (`ce-` headers) and the Kafka binding's
(`ce_` headers).

    read                  reads one event from standard input, as a consumer in another language
                          would, and prints its attributes and data as JSON
    write TYPE            builds one event with the SDK, as a publisher in another language
                          would, and prints it in the JSON event format
    read-binary           reads one RabbitMQ message in binary mode from standard input (JSON:
                          headers, content_type, body) and prints its attributes and data
    write-binary TYPE     builds one event and prints it as the RabbitMQ binding's binary mode
                          writes it (JSON: headers, content_type, body)
    read-kafka            reads one Kafka record in binary mode from standard input (JSON: headers,
                          key, value, as text) with the SDK's Kafka binding, and prints its
                          attributes and data
    write-kafka TYPE      builds one event and prints it as the SDK's Kafka binding writes it in
                          binary mode (JSON: headers, key, value, as text)
    rabbitmq-consume URL QUEUE
                          consumes one message from a RabbitMQ queue with pika, acknowledges it,
                          reads it with the SDK's RabbitMQ binding, and prints it as `read` does
    rabbitmq-publish URL EXCHANGE ROUTING_KEY TYPE
                          builds one event and publishes it with pika, in binary mode, as the
                          SDK's RabbitMQ binding writes it; prints its id
    pubsub-consume SUBSCRIPTION
                          pulls one message from a Pub/Sub subscription (projects/P/subscriptions/S,
                          on the emulator of PUBSUB_EMULATOR_HOST) with google-cloud-pubsub,
                          acknowledges it, reads it in the Pub/Sub binding's binary mode (`ce-`
                          attributes, `Content-Type`: the HTTP binding's mapping, which the SDK
                          reads) and prints it as `read` does
    pubsub-publish TOPIC TYPE
                          builds one event and publishes it with google-cloud-pubsub in the
                          Pub/Sub binding's binary mode, with its `partitionkey` as the ordering
                          key; prints its id
"""

import json
import sys
import uuid
from datetime import datetime, timezone

from cloudevents.core.bindings import http, kafka, rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent


def show(event) -> None:
    attributes = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in event.get_attributes().items()
    }
    print(json.dumps({"attributes": attributes, "data": event.get_data()}))


def read() -> None:
    show(JSONFormat().read(None, sys.stdin.buffer.read()))


def read_binary() -> None:
    message = json.loads(sys.stdin.buffer.read())
    show(
        rabbitmq.from_rabbitmq_event(
            rabbitmq.RabbitMQMessage(
                headers=message["headers"],
                content_type=message["content_type"],
                body=message["body"].encode(),
            )
        )
    )


def write_binary() -> None:
    message = rabbitmq.to_binary_event(event())
    print(
        json.dumps(
            {
                "headers": message.headers,
                "content_type": message.content_type,
                "body": message.body.decode(),
            }
        )
    )


def read_kafka() -> None:
    record = json.loads(sys.stdin.buffer.read())
    show(
        kafka.from_kafka_event(
            kafka.KafkaMessage(
                headers={name: value.encode() for name, value in record["headers"].items()},
                key=record["key"],
                value=record["value"].encode(),
            )
        )
    )


def write_kafka() -> None:
    record = kafka.to_binary_event(event())
    key = record.key.decode() if isinstance(record.key, bytes) else record.key
    print(
        json.dumps(
            {
                "headers": {name: value.decode() for name, value in record.headers.items()},
                "key": key,
                "value": record.value.decode(),
            }
        )
    )


def rabbitmq_consume() -> None:
    import time

    import pika

    url, queue = sys.argv[2], sys.argv[3]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    deadline = time.monotonic() + 20
    while True:
        method, properties, body = channel.basic_get(queue)
        if method is not None:
            break
        if time.monotonic() > deadline:
            sys.exit(f"no message on queue {queue}")
        time.sleep(0.05)
    headers = {
        name: value.decode() if isinstance(value, bytes) else str(value)
        for name, value in (properties.headers or {}).items()
    }
    show(
        rabbitmq.from_rabbitmq_event(
            rabbitmq.RabbitMQMessage(
                headers=headers, content_type=properties.content_type, body=body
            )
        )
    )
    channel.basic_ack(method.delivery_tag)
    connection.close()


def rabbitmq_publish() -> None:
    import pika

    url, exchange, routing_key = sys.argv[2], sys.argv[3], sys.argv[4]
    built = event(sys.argv[5])
    message = rabbitmq.to_binary_event(built)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(
        exchange,
        routing_key,
        message.body,
        pika.BasicProperties(
            headers=message.headers,
            content_type=message.content_type,
            delivery_mode=2,
            message_id=built.get_id(),
        ),
        mandatory=True,
    )
    connection.close()
    print(built.get_id())


def pubsub_consume() -> None:
    from google.cloud import pubsub_v1

    subscription = sys.argv[2]
    subscriber = pubsub_v1.SubscriberClient()
    with subscriber:
        response = subscriber.pull(
            request={"subscription": subscription, "max_messages": 1}, timeout=20
        )
        if not response.received_messages:
            sys.exit(f"no message on subscription {subscription}")
        received = response.received_messages[0]
        message = received.message
        show(
            http.from_http_event(
                http.HTTPMessage(headers=dict(message.attributes), body=message.data)
            )
        )
        subscriber.acknowledge(
            request={"subscription": subscription, "ack_ids": [received.ack_id]}
        )


def pubsub_publish() -> None:
    from google.cloud import pubsub_v1

    topic = sys.argv[2]
    built = event(sys.argv[3])
    message = http.to_binary_event(built)
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    publisher.publish(
        topic, message.body, ordering_key="p-9", **message.headers
    ).result(timeout=20)
    print(built.get_id())


def event(event_type=None) -> CloudEvent:
    return CloudEvent(
        {
            "id": str(uuid.uuid4()),
            "source": "https://erp.example/prices",
            "type": event_type or sys.argv[2],
            "time": datetime.now(timezone.utc),
            "datacontenttype": "application/json",
            "dataversion": 1,
            "partitionkey": "p-9",
        },
        {"product_id": "p-9", "price_cents": 4200},
    )


def write() -> None:
    sys.stdout.buffer.write(JSONFormat().write(event()))


if __name__ == "__main__":
    {
        "read": read,
        "write": write,
        "read-binary": read_binary,
        "write-binary": write_binary,
        "read-kafka": read_kafka,
        "write-kafka": write_kafka,
        "rabbitmq-consume": rabbitmq_consume,
        "rabbitmq-publish": rabbitmq_publish,
        "pubsub-consume": pubsub_consume,
        "pubsub-publish": pubsub_publish,
    }[sys.argv[1]]()
