"""Decodes framed records with fastavro, a client that is not pitwall's.

Input: a file of records, each a 4-byte big-endian length then the framed
bytes; argv[2] is the writer schema (.avsc). Output: JSON lines with the
framing header fields and the decoded record.
"""
import io
import json
import struct
import sys
import uuid
import zlib

import fastavro

schema = fastavro.parse_schema(json.load(open(sys.argv[2])))
data = open(sys.argv[1], "rb").read()
pos = 0
while pos < len(data):
    (n,) = struct.unpack(">I", data[pos:pos + 4])
    rec = data[pos + 4:pos + 4 + n]
    pos += 4 + n
    if rec[0] == 3:  # Glue: version 3, compression byte, 16-byte UUID, datum
        header = {"format": "glue", "compression": rec[1], "version_id": str(uuid.UUID(bytes=rec[2:18]))}
        body = rec[18:]
        if rec[1] == 5:
            body = zlib.decompress(body)
        elif rec[1] != 0:
            sys.exit(f"unknown Glue compression byte {rec[1]}")
    elif rec[0] == 0:  # Confluent: magic 0, big-endian schema id, datum
        header = {"format": "confluent", "schema_id": struct.unpack(">I", rec[1:5])[0]}
        body = rec[5:]
    else:
        sys.exit(f"unknown header byte {rec[0]}")
    buf = io.BytesIO(body)
    value = fastavro.schemaless_reader(buf, schema)
    if buf.read():
        sys.exit("trailing bytes after the Avro datum")
    print(json.dumps({"header": header, "value": value}, default=str))
