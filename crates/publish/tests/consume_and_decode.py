"""Consumes a topic and decodes its values with a registry client that is not
pitwall's: AWS's `aws-glue-schema-registry` (Glue frames; boto3 reads the
standard AWS environment, AWS_ENDPOINT_URL included) or confluent-kafka's
AvroDeserializer (Confluent frames).

    consume_and_decode.py BROKERS TOPIC glue:REGISTRY|confluent:URL WANT

Prints one JSON line per record: {"key": …, "value": …}. Reads with
read_committed until WANT records arrived and the topic stayed quiet for 2 s,
or 30 s passed.
"""
import json
import os
import sys
import time

from confluent_kafka import Consumer
from confluent_kafka.serialization import MessageField, SerializationContext

brokers, topic, registry, want = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
kind, _, where = registry.partition(":")
if kind == "glue":
    import boto3
    from aws_schema_registry import KafkaDeserializer, SchemaRegistryClient

    # boto3 reads AWS_DEFAULT_REGION; the Rust SDK (and pitwall) AWS_REGION.
    glue = boto3.client("glue", region_name=os.environ.get("AWS_REGION"))
    deserializer = KafkaDeserializer(SchemaRegistryClient(glue, registry_name=where))

    def decode(value):
        return deserializer.deserialize(topic, value).data
elif kind == "confluent":
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": where}))
    ctx = SerializationContext(topic, MessageField.VALUE)

    def decode(value):
        return deserializer(value, ctx)
else:
    sys.exit(f"unknown registry {registry}")

consumer = Consumer({
    "bootstrap.servers": brokers,
    "group.id": f"decode-{topic}",
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
})
consumer.subscribe([topic])
seen, deadline, quiet = 0, time.time() + 30, time.time()
while time.time() < deadline and (seen < want or time.time() - quiet < 2):
    m = consumer.poll(0.2)
    if m is None:
        continue
    if m.error():
        sys.exit(f"consumer error: {m.error()}")
    print(json.dumps({"key": m.key().decode(), "value": decode(m.value())}, default=str))
    seen += 1
    quiet = time.time()
consumer.close()
