"""A stand-in OpenTelemetry collector for the two-service example: it receives OTLP/HTTP
(protobuf) trace exports as the OpenTelemetry Collector does, with the official
`opentelemetry-proto` package, and checks that one trace runs from the catalog service to the
search service through the broker.

    python3 collector.py serve PORT SPANS.jsonl   # until killed; one JSON line per span
    python3 collector.py check SPANS.jsonl        # exit 1 unless the trace crosses the services
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def serve(port: int, path: str) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with open(path, "a", encoding="utf-8") as out:
                for resource in request.resource_spans:
                    service = next(
                        (a.value.string_value for a in resource.resource.attributes
                         if a.key == "service.name"),
                        "",
                    )
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            attributes = {a.key: a.value.string_value or str(a.value.int_value)
                                          for a in span.attributes}
                            out.write(json.dumps({
                                "service": service,
                                "name": span.name,
                                "trace": span.trace_id.hex(),
                                "span": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "attributes": attributes,
                            }) + "\n")
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args) -> None:
            pass

    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


def check(path: str) -> None:
    with open(path, encoding="utf-8") as lines:
        spans = [json.loads(line) for line in lines]
    by_id = {s["span"]: s for s in spans}
    consumed = [s for s in spans if s["service"] == "search_service" and s["name"] == "tidings.consume"]
    if not consumed:
        sys.exit(f"no tidings.consume span from search_service among {len(spans)} spans")
    for consume in consumed:
        relay = by_id.get(consume["parent"])
        if relay is None or relay["service"] != "catalog_service" or relay["name"] != "tidings.relay":
            sys.exit(f"the parent of {consume} is not catalog_service's tidings.relay: {relay}")
        # Walk up from the consumer to the root: one trace, started by the catalog's publication.
        span, chain = consume, []
        while span is not None:
            if span["trace"] != consume["trace"]:
                sys.exit(f"{span} is not in the trace of {consume}")
            chain.append(f'{span["service"]}:{span["name"]}')
            span = by_id.get(span["parent"])
        if chain[-1] != "catalog_service:tidings.publish":
            sys.exit(f"the trace of {consume} starts at {chain[-1]}, not at the catalog's publication")
        handlers = [s for s in spans if s["trace"] == consume["trace"]
                    and s["service"] == "search_service" and s["name"] == "tidings.handler"]
        if not handlers:
            sys.exit(f"no search_service handler span in the trace of {consume}")
    print(f"collector: {len(consumed)} messages, each one trace from catalog_service's "
          f"publication to search_service's handler ({len(spans)} spans received)")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        check(sys.argv[2])
