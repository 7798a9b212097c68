"""Export the contracts: a JSON Schema per event type and FastStream's AsyncAPI document."""

from __future__ import annotations

import json
from pathlib import Path

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

import elmo
from elmo.contracts.chain import CHAIN
from elmo.contracts.events import EVENT_TYPES


def json_schemas() -> dict[str, dict]:
    return {model.__name__: model.model_json_schema(mode="validation") for model in EVENT_TYPES}


def asyncapi_document() -> dict:
    """Describe every hop as a typed FastStream subscriber and publisher on a broker never started."""
    broker = KafkaBroker("kafka:9092")
    for hop in CHAIN:
        publisher = broker.publisher(hop.emits.name, schema=hop.output_type, title=f"{hop.service}:{hop.emits.name}",
                                     description=hop.emits.description)
        subscriber = broker.subscriber(hop.consumes.name, group_id=f"elmo-{hop.service}",
                                       title=f"{hop.service}:{hop.consumes.name}", description=hop.summary)

        def handler(event, _hop=hop):  # noqa: ANN001, ANN202 - signature only documents the payload
            return None

        handler.__annotations__ = {"event": hop.input_type, "return": hop.output_type}
        handler.__name__ = hop.service.replace("-", "_")
        publisher(subscriber(handler))
    spec = AsyncAPI(broker, title="Elmo event chain", version=elmo.__version__,
                    description="Topics, event types and the services between them.")
    return json.loads(spec.to_specification().to_json())


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    path = directory / "asyncapi.json"
    path.write_text(json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n")
    written.append(path)
    return written
